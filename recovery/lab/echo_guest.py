"""A guest with nothing but firmware that still talks on its serial line: a boot sector that echoes COM1.

Console tests need real bytes through a real VM's serial port; booting an OS
for that costs seconds under TCG. SeaBIOS starts this sector in well under a
second; it writes a banner and then echoes every byte it receives, through the
BIOS serial services (int 14h), which SeaBIOS provides.
"""

from __future__ import annotations

from pathlib import Path

BANNER = b"READY\r\n"
#: SeaBIOS could not read a 64 KiB disk; 1 MiB (sparse) it boots.
DISK_SIZE = 1 << 20
#: Where the BIOS loads the sector; the code addresses its banner from here.
LOAD_ADDRESS = 0x7C00

# 16-bit code at 0000:7C00, assembled by hand:
#  0: 31 C0      xor ax, ax
#  2: 8E D8      mov ds, ax
#  4: BE 25 7C   mov si, banner (0x7C00 + 37)
#  7: AC         lodsb                 ; print: next banner byte
#  8: 84 C0      test al, al
# 10: 74 08      jz echo               ; -> 20
# 12: B4 01      mov ah, 1             ; int 14h/1: send AL
# 14: 31 D2      xor dx, dx            ; COM1
# 16: CD 14      int 14h
# 18: EB F3      jmp print             ; -> 7
# 20: B4 02      mov ah, 2             ; echo: int 14h/2: receive into AL
# 22: 31 D2      xor dx, dx
# 24: CD 14      int 14h
# 26: F6 C4 80   test ah, 0x80         ; timed out, nothing received
# 29: 75 F5      jnz echo              ; -> 20
# 31: B4 01      mov ah, 1
# 33: CD 14      int 14h               ; send it back
# 35: EB EF      jmp echo              ; -> 20
# 37: banner, NUL-terminated
CODE = bytes.fromhex("31C08ED8BE257CAC84C07408B40131D2CD14EBF3B40231D2CD14F6C48075F5B401CD14EBEF")


def boot_sector() -> bytes:
    sector = bytearray(512)
    program = CODE + BANNER + b"\0"
    sector[: len(program)] = program
    sector[510:] = b"\x55\xaa"
    return bytes(sector)


def write_echo_disk(path: Path) -> Path:
    """A raw disk image whose boot sector is the echo program."""
    with open(path, "wb") as disk:
        disk.write(boot_sector())
        disk.truncate(DISK_SIZE)
    return path
