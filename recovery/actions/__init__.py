"""Commands that act beside a run, not as its steps: undo a restore, salvage files, verify golden images.

They read what a run did through its journal and the step kinds' result
models, and reach hosts through the same access layer as the run.
"""
