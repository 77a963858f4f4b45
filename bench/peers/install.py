"""The peers at pinned versions, installed into ``.peers/`` at the repository's root (git-ignored).

- LiteLLM's proxy, ``litellm[proxy]`` from PyPI, in a virtualenv of its own (``.peers/litellm``), so that none
  of its dependencies ever touches the project's. 1.108.7 is the newest release whose ``[proxy]`` extra
  installed from the package index as pinned when this was written: later ones pin companion packages
  (``litellm-proxy``, ``litellm-proxy-extras``) at versions the index did not serve.
- Portkey's AI gateway, ``@portkey-ai/gateway`` from npm, in ``.peers/portkey/node_modules``. Its build is one
  bundled file that node runs; npm skips the package's ``postinstall`` (patch-package, with no patches
  shipped), which changes nothing.

Each install is skipped when the pinned version is already there, so a second run starts at once. Node and
npm, when missing, are installed with apt-get if running as root (as bench/wrk.py does for wrk); so is
ImageMagick, which turns the chart's SVG into a PNG.

``python -m bench.peers.install`` installs them and prints what it found, without running anything.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cli import shown
from bench.setup import ROOT, BenchError

PEERS_DIR = ROOT / ".peers"
LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"
PORTKEY_PACKAGE = "@portkey-ai/gateway"


@dataclass(frozen=True)
class Installed:
    """Where each peer's command is, and the versions actually installed."""

    litellm: Path  # the proxy's command, in its own virtualenv
    litellm_version: str
    portkey: Path  # the gateway's bundled server, run with node
    portkey_version: str
    node: str
    node_version: str


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = 900) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        detail = "\n".join(
            line for line in (done.stderr or done.stdout).splitlines() if not line.startswith("WARNING")
        )
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{detail.strip()[-2000:]}")
    return done.stdout.strip()


def apt_install(*packages: str) -> None:
    """Debian packages, when running as root; otherwise a clear error saying what to install."""
    if os.geteuid() != 0:
        raise BenchError(
            f"missing: install {' '.join(packages)} (sudo apt-get install -y {' '.join(packages)})"
        )
    print(f"  installing {', '.join(packages)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"apt-get install {' '.join(packages)} failed:\n{done.stderr[-1500:]}")


def ensure_node() -> tuple[str, str]:
    """node and npm on PATH: node's path and npm's."""
    if not (shutil.which("node") and shutil.which("npm")):
        apt_install("nodejs", "npm")
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        raise BenchError("node and npm are still not on PATH after apt-get install nodejs npm")
    return node, npm


def ensure_imagemagick() -> None:
    """A real ImageMagick for the chart (bench/rssplot.py's converter), installed when missing."""
    if not (shutil.which("magick") or shutil.which("convert", path="/usr/bin:/bin")):
        apt_install("imagemagick")


def litellm_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    code = "from importlib.metadata import version; print(version('litellm'))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def install_litellm(peers_dir: Path) -> tuple[Path, str]:
    """``litellm[proxy]==LITELLM_VERSION`` in ``peers_dir/litellm``; its command and version."""
    venv = peers_dir / "litellm"
    if litellm_version(venv) != LITELLM_VERSION or not (venv / "bin" / "litellm").exists():
        print(f"  installing litellm[proxy]=={LITELLM_VERSION} into {shown(venv)}/", flush=True)
        if not (venv / "bin" / "python").exists():
            # Created from the interpreter running the benchmark; venv bases it on that one's own base.
            _run([sys.executable, "-m", "venv", str(venv)], "creating LiteLLM's virtualenv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], f"pip install litellm[proxy]=={LITELLM_VERSION}")
    found = litellm_version(venv)
    if found != LITELLM_VERSION:
        raise BenchError(f"LiteLLM {LITELLM_VERSION} was asked for, {found} is installed in {venv}")
    return venv / "bin" / "litellm", found


def portkey_version(folder: Path) -> str | None:
    manifest = folder / "node_modules" / PORTKEY_PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_portkey(peers_dir: Path, npm: str) -> tuple[Path, str]:
    """``@portkey-ai/gateway@PORTKEY_VERSION`` in ``peers_dir/portkey``; its server file and version."""
    folder = peers_dir / "portkey"
    server = folder / "node_modules" / PORTKEY_PACKAGE / "build" / "start-server.js"
    if portkey_version(folder) != PORTKEY_VERSION or not server.exists():
        print(f"  installing {PORTKEY_PACKAGE}@{PORTKEY_VERSION} into {shown(folder)}/", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"private": True, "dependencies": {PORTKEY_PACKAGE: PORTKEY_VERSION}}
        (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], "npm install", cwd=folder)
    found = portkey_version(folder)
    if found != PORTKEY_VERSION or not server.exists():
        raise BenchError(
            f"Portkey's gateway {PORTKEY_VERSION} was asked for, {found} is installed in {folder}"
        )
    return server, found


def install(peers_dir: Path = PEERS_DIR) -> Installed:
    """Both peers (and ImageMagick for the chart), installed if needed."""
    peers_dir.mkdir(parents=True, exist_ok=True)
    node, npm = ensure_node()
    ensure_imagemagick()
    litellm, litellm_found = install_litellm(peers_dir)
    portkey, portkey_found = install_portkey(peers_dir, npm)
    node_version = _run([node, "--version"], "node --version")
    return Installed(litellm, litellm_found, portkey, portkey_found, node, node_version)


def main() -> int:
    try:
        found = install()
    except BenchError as exc:
        print(f"peers install failed: {exc}", file=sys.stderr)
        return 1
    print(f"LiteLLM proxy {found.litellm_version}: {shown(found.litellm)}")
    print(f"Portkey's gateway {found.portkey_version}: {shown(found.portkey)} (node {found.node_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
