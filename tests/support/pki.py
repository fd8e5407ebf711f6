"""A throwaway PKI for TLS tests (Redis over TLS, SMTP STARTTLS), made with openssl."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
    )  # fmt: skip
    return cert, key


def make_leaf(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str | None
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", f"/CN={name}", "-keyout", key, "-out", csr,
    )  # fmt: skip
    signing: list[str | Path] = ["-CA", ca[0], "-CAkey", ca[1], "-days", "2"]
    signing += ["-set_serial", str(time.time_ns())]
    if extensions:
        ext_file = directory / f"{name}.ext"
        ext_file.write_text(extensions + "\n")
        signing += ["-extfile", ext_file]
    openssl("x509", "-req", "-in", csr, "-out", cert, *signing)
    return cert, key
