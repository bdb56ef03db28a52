"""The am-demo command as a process: start, banner, signals, port in use, token.

These runs serve a one-file site (--site), so they skip the JupyterLite build.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asyncmachine.demo._state import load_or_create_token

STARTUP_TIMEOUT_SECONDS = 60
URL_PATTERN = re.compile(r"open the bar notebook:\s+(\S+)")


def environment(repo_root: Path, state_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(repo_root / "kernel"), str(repo_root / "repl")]
    paths.append(env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env["XDG_STATE_HOME"] = str(state_home)
    return env


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    (folder / "notebooks").mkdir(parents=True)
    (folder / "index.html").write_text("<p>site</p>")
    (folder / "notebooks" / "index.html").write_text("<p>notebook</p>")
    return folder


def start_demo(repo_root: Path, tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncmachine.demo", *args],
        cwd=repo_root,
        env=environment(repo_root, tmp_path / "state"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_python(
    repo_root: Path, tmp_path: Path, *args: str, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run this Python with `args` to the end, under an optional command `prefix`."""
    return subprocess.run(
        [*(prefix or []), sys.executable, *args],
        cwd=repo_root,
        env=environment(repo_root, tmp_path / "state"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
        check=False,
    )


def read_page_url(process: subprocess.Popen) -> str:
    """Read the banner from stdout and return the page URL it prints."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = URL_PATTERN.search(line)
        if match:
            return match.group(1)
    process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
    pytest.fail(f"no page URL printed; stdout: {seen}; stderr: {process.stderr.read()}")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(repo_root, tmp_path, site, signal_number):
    repl_dir = tmp_path / "repl"
    transcript = tmp_path / "transcript.txt"
    dump = tmp_path / "dump.jsonl.gz"
    process = start_demo(
        repo_root,
        tmp_path,
        "--site",
        str(site),
        "--listen",
        "127.0.0.1:0",
        "--repl-dir",
        str(repl_dir),
        "--transcript",
        str(transcript),
        "--dump",
        str(dump),
    )
    try:
        url = read_page_url(process)
        files_while_running = sorted(path.name for path in repl_dir.iterdir())
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
        process.send_signal(signal_number)
        _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert files_while_running == ["server-foo.addr"]
    assert "notebook" in page
    assert list(repl_dir.iterdir()) == []
    assert "server-foo" in transcript.read_text()
    assert dump.stat().st_size > 0
    assert f"stopping on {signal_number.name}" in stderr
    assert "demo server stopped" in stderr


def test_port_in_use_reported(repo_root, tmp_path, site):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = start_demo(
            repo_root,
            tmp_path,
            "--site",
            str(site),
            "--listen",
            f"127.0.0.1:{port}",
            "--repl-dir",
            str(tmp_path / "repl"),
        )
        _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)

    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "already in use" in stderr
    assert "--listen" in stderr


def privileged_port_denied() -> list[str]:
    """Return a command prefix under which binding port 1 fails, or skip."""
    try:
        first_free = int(
            Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
        )
    except (OSError, ValueError):
        first_free = 1024
    if os.geteuid() != 0:
        if first_free <= 1:
            pytest.skip("this system lets every user bind port 1")
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv, so port 1 cannot be denied")
    # Without CAP_NET_BIND_SERVICE in its bounding set, root cannot bind port 1.
    return [setpriv, "--bounding-set=-net_bind_service"]


def test_privileged_port_reported(repo_root, tmp_path, site):
    result = run_python(
        repo_root,
        tmp_path,
        "-m",
        "asyncmachine.demo",
        "--site",
        str(site),
        "--listen",
        "127.0.0.1:1",
        "--repl-dir",
        str(tmp_path / "repl"),
        prefix=privileged_port_denied(),
    )

    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:1: permission denied" in result.stderr
    assert "port of 1024 or above" in result.stderr
    assert "Errno" not in result.stderr


def test_token_kept_between_runs(repo_root, tmp_path, site):
    urls = []
    for _run in range(2):
        process = start_demo(
            repo_root,
            tmp_path,
            "--site",
            str(site),
            "--listen",
            "127.0.0.1:0",
            "--repl-dir",
            str(tmp_path / "repl"),
        )
        try:
            urls.append(read_page_url(process))
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    token_file = tmp_path / "state" / "asyncmachine-demo" / "token"
    token = token_file.read_text().strip()
    assert all(url.endswith(f"?token={token}") for url in urls)
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_missing_site_reported(repo_root, tmp_path):
    process = start_demo(repo_root, tmp_path, "--site", str(tmp_path / "nothing"))
    _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)

    assert process.returncode == 1
    assert "is not a built JupyterLite site" in stderr
    assert "leave out --site" in stderr
    assert f"{sys.executable} -m asyncmachine.lite --out DIR" in stderr


def test_missing_dependency_names_extra(repo_root, tmp_path):
    # None in sys.modules makes "import rpyc" fail as if rpyc were not installed.
    script = (
        "import sys; sys.modules['rpyc'] = None\n"
        "from asyncmachine.demo.cli import main\n"
        "sys.exit(main(['--site', sys.argv[1]]))"
    )
    result = run_python(repo_root, tmp_path, "-c", script, str(tmp_path))

    assert result.returncode == 1
    assert "package rpyc is missing" in result.stderr
    assert "pip install 'asyncmachine[demo]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_version(repo_root, tmp_path):
    for option, expected in (("--help", "--headless"), ("--version", ".")):
        process = start_demo(repo_root, tmp_path, option)
        stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
        assert process.returncode == 0, stderr
        assert expected in stdout


def test_headless_and_local_exclusive(repo_root, tmp_path):
    process = start_demo(repo_root, tmp_path, "--headless", "--local")
    _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)

    assert process.returncode == 2
    assert "not allowed with argument" in stderr


def test_token_file_created_once(tmp_path):
    first = load_or_create_token(tmp_path)
    second = load_or_create_token(tmp_path)

    assert first == second
    assert len(first) >= 32


def test_empty_token_file_rejected(tmp_path):
    (tmp_path / "token").write_text("\n")

    with pytest.raises(ValueError, match="is empty"):
        load_or_create_token(tmp_path)


def test_page_url_sets_cookie(repo_root, tmp_path, site):
    process = start_demo(
        repo_root,
        tmp_path,
        "--site",
        str(site),
        "--listen",
        "127.0.0.1:0",
        "--repl-dir",
        str(tmp_path / "repl"),
        "--token",
        "cli-token",
    )
    try:
        url = read_page_url(process)
        opener = urllib.request.build_opener(NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(url, timeout=10)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    redirect = caught.value
    port = url.split(":")[2].split("/")[0]
    assert redirect.code == 302
    assert "notebooks/index.html?path=bar.ipynb" in redirect.headers["Location"]
    cookie = redirect.headers["Set-Cookie"]
    assert cookie.startswith(f"am_relay_token_{port}=cli-token")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_headless_sigterm_stops_cleanly(repo_root, tmp_path, site):
    repl_dir = tmp_path / "repl"
    process = start_demo(
        repo_root,
        tmp_path,
        "--headless",
        "--site",
        str(site),
        "--repl-dir",
        str(repl_dir),
    )
    try:
        assert process.stderr is not None
        seen = []
        # The one-file site has no notebook, so the run waits at this step.
        for line in process.stderr:
            seen.append(line)
            if "load the page" in line:
                break
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 128 + signal.SIGTERM, "".join(seen) + stderr
    assert "step 'load the page' failed: stopped by SIGTERM" in stderr
    assert list(repl_dir.iterdir()) == []


def test_banner_am_repl_found_on_path(monkeypatch):
    from asyncmachine.demo.cli import _am_repl_command

    script = Path(sys.executable).parent / "am-repl"
    monkeypatch.setenv("PATH", str(script.parent))
    assert _am_repl_command() == "am-repl"

    # An environment that is not activated: the banner names the script itself.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _am_repl_command() == str(script)


def test_listen_port_out_of_range(repo_root, tmp_path):
    process = start_demo(repo_root, tmp_path, "--listen", "127.0.0.1:99999")
    _stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)

    assert process.returncode == 2
    assert "port 99999 in '127.0.0.1:99999' is out of range" in stderr
    assert "0 for any free port" in stderr
