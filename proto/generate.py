"""Generate the Python event contracts from proto/ (``make proto``), or check they are current.

Usage: python proto/generate.py [--check]
The generated modules live in libs/platform/src/npo_platform/contracts/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
CONTRACTS = PROTO_ROOT.parent / "libs" / "platform" / "src" / "npo_platform" / "contracts"
SOURCES = ("npo/events/v1/events.proto",)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (bundled with grpcio-tools, pinned) into out_dir; return the generated files."""
    include = str(resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", *SOURCES]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*_pb2.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for generated in generate(Path(tmp)):
            target = CONTRACTS / generated.name
            if check:
                if not target.exists() or target.read_bytes() != generated.read_bytes():
                    stale.append(target.name)
            else:
                target.write_bytes(generated.read_bytes())
    if stale:
        print(f"stale generated contracts: {', '.join(stale)}; run 'make proto'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
