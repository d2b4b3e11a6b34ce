"""A private Docker engine for the compose tests, on a machine with no engine running and no
access to Docker Hub (the steps of ../shared/docker/compose-demo.sh, kept in the repository so
that a clean clone needs nothing else).

- `Engine` starts its own dockerd (as root) on a socket of its own, with its data in a cache
  folder kept between runs (the image layer cache: `FEDCORE_DOCKER_CACHE`, default
  /var/tmp/fedcore-docker), and on `stop` ends it and undoes what it changed on the host
  (the docker0 bridge, iptables rules, ip_forward) where the host had none of it before.
- `ensure_base` provides `python:3.11-slim`: pulled when Docker Hub answers, otherwise a
  stand-in made with debootstrap (Debian bookworm, python3 3.11) from apt's Debian mirror.
  `fedcore-build-base` adds a local CPU torch wheel (pip's find-links) for the images' build
  stage, so that pip does not need the PyTorch index.
- `build_images` builds server/Dockerfile and clients/Dockerfile as docker-compose.yml names
  them.

Also a command, for trying the compose file by hand (as root):
    python tests/integration/docker_env.py serve   # engine + images; prints DOCKER_HOST,
                                                   # stops the engine on Ctrl-C or SIGTERM
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = "python:3.11-slim"
BUILD_BASE = "fedcore-build-base"  # tagged with the torch wheel it holds
IMAGES = {"server/Dockerfile": "fedcore-coordinator:latest",
          "clients/Dockerfile": "fedcore-client:latest"}
TOOLS = ("dockerd", "docker", "docker-compose")


class Unavailable(Exception):
    """No Docker engine can be started here; the message says why."""


def cache_dir() -> Path:
    """Where the engine keeps images and layers between runs."""
    return Path(os.environ.get("FEDCORE_DOCKER_CACHE", "/var/tmp/fedcore-docker"))


def missing() -> str | None:
    """Why an engine cannot be started here, or None when it can be tried."""
    if os.geteuid() != 0:
        return "starting dockerd needs root"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: apt-get install docker.io docker-compose)"
    return None


@dataclass(frozen=True)
class HostNetwork:
    """What dockerd changes on the host, as it was before it started."""

    had_bridge: bool
    had_iptables: bool
    ip_forward: str

    @classmethod
    def capture(cls) -> HostNetwork:
        bridge = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True,
                                check=False).returncode == 0
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
        forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        return cls(bridge, bool(rules.stdout.strip()), forward)

    def restore(self) -> None:
        """Undo dockerd's changes, only where the host started from nothing."""
        def quiet(*argv: str) -> None:
            subprocess.run(argv, capture_output=True, check=False)

        if not self.had_bridge:
            quiet("ip", "link", "delete", "docker0")
        if not self.had_iptables:
            for args in (["-t", "nat", "-F"], ["-t", "nat", "-X"], ["-F"], ["-X"],
                         ["-P", "FORWARD", "ACCEPT"]):
                quiet("iptables", *args)
            for table in ("nat", "filter"):
                quiet("nft", "delete", "table", "ip", table)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")


class Engine:
    """A dockerd of our own: its socket and exec state in a temporary folder, its data in
    `data_root` (kept: the layer cache)."""

    def __init__(self, data_root: Path | None = None) -> None:
        self.data_root = data_root or cache_dir() / "data"
        self.work = Path(tempfile.mkdtemp(prefix="fedcore-dockerd-"))
        self.socket = self.work / "docker.sock"
        self.log_path = self.work / "dockerd.log"
        self.overrides: list[Path] = []
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0",
                    "COMPOSE_DOCKER_CLI_BUILD": "0"}
        self._proc: subprocess.Popen[bytes] | None = None
        self._host: HostNetwork | None = None

    def start(self, timeout: float = 90) -> None:
        """Start dockerd and wait until it answers; Unavailable (engine stopped) if it does not."""
        why = missing()
        if why:
            raise Unavailable(why)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._host = HostNetwork.capture()
        driver = os.environ.get("FEDCORE_DOCKER_STORAGE", "overlay2")
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.work / "exec"),
                 "--pidfile", str(self.work / "dockerd.pid"), "--host", self.env["DOCKER_HOST"],
                 "--storage-driver", driver],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while self.docker("version", check=False, timeout=10).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > end:
                tail = self.log_tail()
                self.stop()
                raise Unavailable(f"dockerd did not start: {tail}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def docker(self, *args: str, check: bool = True, timeout: float = 120,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; AssertionError with its output on failure."""
        return _run(["docker", *args], self.env, check, timeout, input)

    def compose(self, project: str, *args: str, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """docker-compose on the repository's docker-compose.yml (then `self.overrides`, each
        a compose file layered on top) as project `project`."""
        files = [ROOT / "docker-compose.yml", *self.overrides]
        return _run(["docker-compose", "-p", project, *(f"--file={f}" for f in files), *args],
                    self.env, check, timeout, None, cwd=ROOT)

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False, timeout=30).returncode == 0

    def stop(self) -> None:
        """End dockerd (its containers with it) and undo its host changes; idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(60)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            self._proc = None
        _remove(self.work)
        if self._host is not None:
            self._host.restore()
            self._host = None


def _remove(folder: Path) -> None:
    """Unmount whatever is mounted below `folder` (never delete through a mount), then delete it."""
    with open("/proc/mounts") as mounts:
        ours = [line.split()[1] for line in mounts
                if line.split()[1] == str(folder) or line.split()[1].startswith(f"{folder}/")]
    for mount in sorted(ours, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    with open("/proc/mounts") as mounts:
        if any(line.split()[1].startswith(f"{folder}/") for line in mounts):
            raise AssertionError(f"{folder} still has mounts below it: not deleting it")
    shutil.rmtree(folder, ignore_errors=True)


def _run(argv: Sequence[str], env: dict[str, str], check: bool, timeout: float,
         input: bytes | None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if input is not None:
        raw = subprocess.run(argv, env=env, input=input, capture_output=True, timeout=timeout,
                             check=False, cwd=cwd)
        result = subprocess.CompletedProcess(argv, raw.returncode, raw.stdout.decode(errors="replace"),
                                             raw.stderr.decode(errors="replace"))
    else:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                                check=False, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def debian_mirror() -> str:
    """The Debian mirror in apt's sources (MIRROR overrides it)."""
    if os.environ.get("MIRROR"):
        return os.environ["MIRROR"]
    texts = [p.read_text(errors="replace") for pattern in
             ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*")
             for p in map(Path, glob.glob(pattern)) if p.is_file()]
    for text in texts:
        for url in re.findall(r"(?:URIs:|^deb)\s+([a-z]+://\S+/debian)/?(?:\s|$)", text, re.MULTILINE):
            return str(url)
    raise Unavailable("no Debian mirror in apt's sources to make a python:3.11-slim stand-in; set MIRROR")


def torch_wheel() -> Path | None:
    """A local CPU wheel of the torch that constraints.txt pins (pip's find-links), if any."""
    pin = re.search(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    folders = [os.environ.get("TORCH_WHEEL_DIR", ""), os.environ.get("PIP_FIND_LINKS", "")]
    config = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                            capture_output=True, text=True, check=False)
    folders += config.stdout.split()
    version = pin.group(1) if pin else "*"
    for folder in filter(None, (f.removeprefix("file://") for f in folders)):
        found = sorted(glob.glob(f"{folder}/torch-{version}+cpu-cp311-*.whl"))
        if found:
            return Path(found[-1])
    return None


def ensure_base(engine: Engine, say: object = print) -> str:
    """`python:3.11-slim` (pulled, or a debootstrap stand-in) and the build stages' base;
    returns the latter's name (BUILD_BASE for the Dockerfiles)."""
    if not engine.has_image(BASE):
        pulled = engine.docker("pull", BASE, check=False, timeout=120).returncode == 0
        if not pulled:
            say(f"{BASE} cannot be pulled: making a stand-in with debootstrap")  # type: ignore[operator]
            _stand_in(engine)
    wheel = torch_wheel()
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", wheel.name.split("-cp")[0]) if wheel else "no-wheel"
    build_base = f"{BUILD_BASE}:{tag}"
    if not engine.has_image(build_base):
        _build_base(engine, wheel, build_base)
    return build_base


def _stand_in(engine: Engine) -> None:
    if shutil.which("debootstrap") is None:
        raise Unavailable(f"{BASE} cannot be pulled and debootstrap is not installed")
    rootfs = Path(tempfile.mkdtemp(prefix="fedcore-rootfs-", dir=cache_dir()))
    try:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs), debian_mirror()],
            capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise AssertionError(f"debootstrap failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        # Outgoing TLS may be re-signed by a local CA: the image trusts the host's extra CAs.
        extra = glob.glob("/usr/local/share/ca-certificates/*.crt")
        for crt in extra:
            shutil.copy(crt, rootfs / "usr/local/share/ca-certificates")
        if extra:
            subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], capture_output=True,
                           check=True)
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV LANG=C.UTF-8", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                   "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt", 'CMD ["python3"]']
        tar = subprocess.run(["tar", "-C", str(rootfs), "--one-file-system", "-c", "."], capture_output=True, check=True,
                             timeout=300).stdout
        engine.docker("import", *(a for c in changes for a in ("--change", c)), "-", BASE,
                      input=tar, timeout=300)
    finally:
        _remove(rootfs)


def _build_base(engine: Engine, wheel: Path | None, name: str) -> None:
    """The build stages' base: python:3.11-slim, plus the local torch wheel when there is one
    (pip then finds it instead of asking the PyTorch index, which may be out of reach)."""
    with tempfile.TemporaryDirectory() as context:
        lines = [f"FROM {BASE}", "ENV PIP_RETRIES=1"]  # an unreachable index fails fast
        if wheel is not None:
            os.makedirs(f"{context}/wheels")
            shutil.copy(wheel, f"{context}/wheels/")
            lines += ["COPY wheels /opt/wheels", "ENV PIP_FIND_LINKS=/opt/wheels"]
        Path(context, "Dockerfile").write_text("\n".join(lines) + "\n")
        engine.docker("build", "-q", "-t", name, context, timeout=300)


def build_images(engine: Engine, build_base: str,
                 build_args: Sequence[str] = ()) -> dict[str, float]:
    """Build the two images from the repository (layer cache kept); seconds per image."""
    seconds = {}
    for dockerfile, tag in IMAGES.items():
        t0 = time.monotonic()
        engine.docker("build", "-q", "--build-arg", f"BUILD_BASE={build_base}", *build_args,
                      "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT), timeout=900)
        seconds[tag] = time.monotonic() - t0
    # Earlier builds' untagged images, once days old, only fill the cache folder.
    engine.docker("image", "prune", "-f", "--filter", "until=72h", check=False, timeout=300)
    return seconds


def image_size(engine: Engine, tag: str) -> int:
    """An image's size in bytes, as `docker images` reports it."""
    return int(engine.docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())


def main(argv: Sequence[str]) -> int:
    """`serve`: engine and images, then wait for SIGINT/SIGTERM and stop the engine."""
    if list(argv) != ["serve"]:
        print(__doc__)
        return 2
    engine = Engine()
    stop = False

    def end(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    try:
        engine.start()
        print("built in", build_images(engine, ensure_base(engine)), flush=True)
        print(f"export DOCKER_HOST={engine.env['DOCKER_HOST']}  # until this ends", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
