"""`recover check TARGET`: is the fleet ready for an incident, before there is one?

Like a Terraform plan or an Ansible preflight, each item is a small function
that reads (never changes) one thing and returns PASS, WARN or FAIL with the
fix. Items that decide whether a run can reach its hosts and services are
also the preflight of `recover TARGET` (:mod:`.preflight`).
"""
