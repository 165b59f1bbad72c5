"""`bootstrap download` for every CLIProxyAPI line, against the GitHub stand-in: mainline 7.x (`CLIProxyAPI_...` with
`cli-proxy-api`), a Plus fork on 7.x (`CLIProxyAPIPlus_...` with `cli-proxy-api-plus`, `_no-plugin` builds next to
the default ones), a release with both kinds, a banner naming another version, a `-h` that exits non-zero, a gone
repository (404) and its continuations, the default repository, `doctor` naming the line, and the Copilot login
refused on mainline.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from unittest import mock

from llm_router import bootstrap, cliproxy_lines, releases
from llm_router import config as config_mod
from llm_router.cliproxy_lines import MAINLINE_7, PLUS_6, PLUS_FORK_7
from llm_router.errors import CHECK_FAILED, NOT_FOUND
from llm_router.standin.cliproxy import build_release_archive, fake_binary_script, install_fake_binary
from llm_router.standin.github import GitHubServer, publish
from llm_router.standin.process import free_port
from tests.support import TempRepo, serve_github, snapshot

MAINLINE = "router-for-me/CLIProxyAPI"
FORK = "kaitranntt/CLIProxyAPIPlus"
GONE = "router-for-me/CLIProxyAPIPlus"
MAIN_V, FORK_V, OLD_V = "7.2.140", "7.1.68-6", "6.9.28-0"
PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")]
MODELS = """\
providers:
  cliproxy: {type: cliproxyapi_plus}
models:
  - name: coder
    deployments: [{provider: cliproxy, model: gpt-5-codex}]
  - name: sonnet
    deployments: [{provider: cliproxy, model: claude-sonnet-4.5}]
"""


class LinesCase(TempRepo):
    """A temp repo whose bootstrap points at a GitHub stand-in; an older Plus binary is installed with a manifest
    and a `.previous` pair, so every refusal can prove they stayed byte-identical."""

    platform = ("linux", "amd64")

    def setUp(self) -> None:
        super().setUp()
        self.server = serve_github(self)
        self.assets = Path(tempfile.mkdtemp(prefix="llm-router-assets-"))
        self.addCleanup(shutil.rmtree, self.assets, True)
        for patch in (mock.patch.object(releases, "BACKOFF", 0),
                      mock.patch.object(bootstrap, "platform_id", side_effect=lambda: self.platform),
                      mock.patch.dict(os.environ, {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"})):
            patch.start()
            self.addCleanup(patch.stop)
        os.environ.pop("GITHUB_TOKEN", None)
        self.ports = {"cliproxy": free_port(), "litellm": free_port()}
        self.configure()

    def configure(self, **bootstrap_keys: str) -> None:
        """routertool.yaml with only github_api_url set under bootstrap unless `bootstrap_keys` add more (so the
        defaults apply), loopback services on free ports, and a Codex and a Copilot model group."""
        keys = {"github_api_url": self.server.url, **bootstrap_keys}
        self.write_config("config_version: 2\nbootstrap:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())
                          + "services:\n"
                          + f"  cliproxyapi_plus: {{host: 127.0.0.1, port: {self.ports['cliproxy']}}}\n"
                          + f"  litellm: {{host: 127.0.0.1, port: {self.ports['litellm']}}}\n" + MODELS)
        self.cfg = config_mod.load(self.config_path)
        self.layout = self.cfg.layout

    def install_old(self) -> dict:
        """An installed Plus v6.9.28-0 (manifest included) and a `.previous` v6.9.27-0; returns bin/'s snapshot."""
        layout = self.layout
        for binary, manifest, version in ((layout.cliproxy_binary, layout.bin_manifest, OLD_V),
                                          (layout.cliproxy_previous_binary, layout.bin_previous_manifest, "6.9.27-0")):
            install_fake_binary(binary, version)
            manifest.write_text(json.dumps({"version": f"v{version}", "repository": GONE, "sha256": "0" * 64,
                                            "binary_sha256": bootstrap.sha256_file(binary)}))
        return snapshot(layout.bin_dir)

    def download(self, *args: str) -> tuple[int, str, str]:
        return self.cli("bootstrap", "download", *args)

    def manifest(self) -> dict:
        return json.loads(self.layout.bin_manifest.read_text())

    def temp_files(self) -> list[Path]:
        tmp = self.layout.tmp_dir
        return list(tmp.iterdir()) if tmp.exists() else []

    def release(self, repository: str, tag: str, files: dict[str, bytes]) -> None:
        """Publish `files` plus a checksums.txt listing all of them as `tag` of `repository`."""
        folder = Path(tempfile.mkdtemp(dir=self.assets))
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / "checksums.txt").write_text(
            "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()))
        self.server.add_release(repository, tag, sorted(folder.iterdir()))

    def assert_installed(self, out: str, err: str, repository: str, version: str, line: str, asset: str,
                         binary: str) -> dict:
        self.assertIn(f"installed CLIProxyAPIPlus v{version}", out)
        manifest = self.manifest()
        self.assertEqual({k: manifest[k] for k in ("version", "repository", "asset", "line", "binary", "verified")},
                         {"version": f"v{version}", "repository": repository, "asset": asset, "line": line,
                          "binary": binary, "verified": True})
        self.assertEqual(manifest["sha256"], hashlib.sha256(self.server.files[
            GitHubServer.download_path(repository, f"v{version}", asset)]).hexdigest())
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), version)  # 7.x: the tag, no -plus
        self.assertEqual(self.layout.cliproxy_binary.stat().st_mode & 0o777, 0o755)
        self.assertEqual(bootstrap.read_manifest(self.layout.bin_previous_manifest)["version"], f"v{OLD_V}")
        self.assertEqual(self.temp_files(), [])
        self.assertNotIn("Traceback", out + err)
        return manifest

    def assert_refused(self, before: dict, code: int, err: str, *needles: str) -> None:
        for needle in needles:
            self.assertIn(needle, err)
        self.assertTrue(err.startswith("error: "), err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(snapshot(self.layout.bin_dir), before, "the installed binary or a manifest changed")
        self.assertEqual(self.temp_files(), [])
        events = [json.loads(line) for line in self.layout.events_log.read_text().splitlines()]
        self.assertEqual((events[-1]["event"], events[-1]["result"]), ("bootstrap_download", "error"))


class InstallLinesTest(LinesCase):
    def test_mainline_release_installs_cli_proxy_api(self):
        publish(self.server, MAINLINE, MAIN_V, self.assets, platforms=PLATFORMS, no_plugin=True)
        self.configure(cliproxy_repository=MAINLINE, cliproxy_version=f"v{MAIN_V}")
        self.install_old()
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assert_installed(out, err, MAINLINE, MAIN_V, MAINLINE_7, f"CLIProxyAPI_{MAIN_V}_linux_amd64.tar.gz",
                              "cli-proxy-api")
        self.assertRegex(out, r"line\s+CLIProxyAPI mainline 7.x")
        self.assertIn("warning: CLIProxyAPI mainline 7.x has no GitHub Copilot", err)
        self.assertIn(f"llm-router bootstrap download --repository {FORK}", err)
        # the events log names the line
        last = json.loads(self.layout.events_log.read_text().splitlines()[-1])
        self.assertEqual((last["result"], last["detail"]["line"]), ("installed", MAINLINE_7))

    def test_mainline_on_arm64_takes_the_aarch64_asset(self):
        self.platform = ("linux", "arm64")
        publish(self.server, MAINLINE, MAIN_V, self.assets, platforms=PLATFORMS)
        code, out, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, 0, err)
        self.assertEqual((self.manifest()["asset"], self.manifest()["binary"]),
                         (f"CLIProxyAPI_{MAIN_V}_linux_aarch64.tar.gz", "cli-proxy-api"))

    def test_mainline_on_windows_takes_the_exe(self):
        self.platform = ("windows", "amd64")
        publish(self.server, MAINLINE, MAIN_V, self.assets, platforms=PLATFORMS)
        code, out, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, 0, err)
        self.assertEqual((self.manifest()["asset"], self.manifest()["binary"]),
                         (f"CLIProxyAPI_{MAIN_V}_windows_amd64.zip", "cli-proxy-api.exe"))

    def test_plus_fork_release_prefers_the_default_build_over_no_plugin(self):
        publish(self.server, FORK, FORK_V, self.assets, platforms=PLATFORMS, no_plugin=True)
        self.configure(cliproxy_repository=FORK, cliproxy_version=f"v{FORK_V}")
        self.install_old()
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assert_installed(out, err, FORK, FORK_V, PLUS_FORK_7, f"CLIProxyAPIPlus_{FORK_V}_linux_amd64.tar.gz",
                              "cli-proxy-api-plus")
        self.assertNotIn("no GitHub Copilot", err)

    def test_a_fork_tag_with_a_plus_suffix_can_be_pinned(self):
        # kaitranntt/CLIProxyAPIPlus tags its releases like v7.1.5-0-plus (reference §9): pinned in routertool.yaml
        # and on the command line alike
        tagged = "7.1.5-0-plus"
        publish(self.server, FORK, tagged, self.assets, platforms=PLATFORMS)
        self.configure(cliproxy_repository=FORK, cliproxy_version=f"v{tagged}")
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        manifest = self.manifest()
        self.assertEqual((manifest["version"], manifest["line"], manifest["asset"]),
                         (f"v{tagged}", PLUS_FORK_7, f"CLIProxyAPIPlus_{tagged}_linux_amd64.tar.gz"))
        code, out, err = self.download("--cliproxy-version", f"v{tagged}")
        self.assertEqual(code, 0, err)
        self.assertIn("already installed", out)

    def test_release_with_both_kinds_takes_the_plus_asset(self):
        publish(self.server, FORK, FORK_V, self.assets, platforms=PLATFORMS, lines=[MAINLINE_7, PLUS_FORK_7])
        assets = {a["name"] for a in self.server.releases[(FORK, f"v{FORK_V}")]["assets"]}
        self.assertIn(f"CLIProxyAPI_{FORK_V}_linux_amd64.tar.gz", assets)  # both kinds really are there
        self.install_old()
        code, out, err = self.download("--repository", FORK, "--cliproxy-version", f"v{FORK_V}")
        self.assertEqual(code, 0, err)
        self.assert_installed(out, err, FORK, FORK_V, PLUS_FORK_7, f"CLIProxyAPIPlus_{FORK_V}_linux_amd64.tar.gz",
                              "cli-proxy-api-plus")

    def test_plus_6_release_still_installs(self):
        publish(self.server, "someone/mirror", OLD_V, self.assets, platforms=PLATFORMS)
        code, out, err = self.download("--repository", "someone/mirror", "--cliproxy-version", f"v{OLD_V}")
        self.assertEqual(code, 0, err)
        manifest = self.manifest()
        self.assertEqual((manifest["line"], manifest["binary"], manifest["binary_version"]),
                         (PLUS_6, "cli-proxy-api-plus", f"{OLD_V}-plus"))

    def test_local_mainline_archive(self):
        archive = build_release_archive(self.assets / "local", MAIN_V, "linux", "amd64")
        bootstrap_sums = self.assets / "local" / "checksums.txt"
        bootstrap_sums.write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
        self.install_old()
        code, out, err = self.download("--archive", str(archive))
        self.assertEqual(code, 0, err)
        manifest = self.manifest()
        self.assertEqual((manifest["version"], manifest["line"], manifest["binary"], manifest["asset"]),
                         (f"v{MAIN_V}", MAINLINE_7, "cli-proxy-api", archive.name))
        self.assertEqual(self.temp_files(), [])

    def test_doctor_names_the_line_after_a_mainline_install(self):
        publish(self.server, MAINLINE, MAIN_V, self.assets, platforms=PLATFORMS)
        self.configure(cliproxy_repository=MAINLINE, cliproxy_version=f"v{MAIN_V}")
        self.assertEqual(self.download()[0], 0)
        code, out, err = self.cli("doctor", "--json")
        findings = [f for f in json.loads(out)["data"]["findings"] if f["check"] == "cliproxy-line"]
        details = [f["detail"] for f in findings]
        self.assertTrue(details[0].startswith(f"CLIProxyAPI mainline 7.x {MAIN_V}: Codex, no GitHub Copilot"),
                        details)
        lacking = [f for f in findings if "need(s) GitHub Copilot" in f["detail"]]
        self.assertEqual(len(lacking), 1, details)
        self.assertEqual(lacking[0]["status"], "fail")
        self.assertIn("claude-sonnet-4.5", lacking[0]["detail"])
        self.assertIn(f"llm-router bootstrap download --repository {FORK}", lacking[0]["fix"])
        self.assertTrue(any("no GitHub Copilot (use a Plus line" in d for d in details), details)


class RefusedLinesTest(LinesCase):
    def test_banner_naming_another_version_is_refused(self):
        other = build_release_archive(self.assets / "wrong", MAIN_V, "linux", "amd64", binary_version="7.2.139")
        self.release(MAINLINE, f"v{MAIN_V}", {other.name: other.read_bytes()})
        before = self.install_old()
        code, _, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, CHECK_FAILED, err)
        self.assert_refused(before, code, err, f"the binary in the v{MAIN_V} archive says it is version '7.2.139'",
                            "refusing to install it")

    def test_probe_exiting_non_zero_is_refused(self):
        script = (f"#!/bin/sh\necho 'CLIProxyAPI Version: {MAIN_V}, Commit: x, BuiltAt: y'\n"
                  "echo 'flag provided but not defined: -h' >&2\nexit 2\n").encode()
        name = f"CLIProxyAPI_{MAIN_V}_linux_amd64.tar.gz"
        self.release(MAINLINE, f"v{MAIN_V}", {name: tar_gz(("cli-proxy-api", script))})
        before = self.install_old()
        code, _, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, CHECK_FAILED, err)
        self.assert_refused(before, code, err, "printed its banner but `-h` exited 2 (the real binary exits 0)")

    def test_archive_without_the_binary_is_refused(self):
        name = f"CLIProxyAPI_{MAIN_V}_linux_amd64.tar.gz"
        self.release(MAINLINE, f"v{MAIN_V}", {name: tar_gz(("README.md", b"# nothing\n"))})
        before = self.install_old()
        code, _, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, CHECK_FAILED, err)
        self.assert_refused(before, code, err, "does not contain cli-proxy-api or cli-proxy-api-plus")

    def test_asset_of_another_version_is_not_taken(self):
        stray = build_release_archive(self.assets / "stray", "7.2.139", "linux", "amd64")
        self.release(MAINLINE, f"v{MAIN_V}", {stray.name: stray.read_bytes()})
        before = self.install_old()
        code, _, err = self.download("--repository", MAINLINE, "--cliproxy-version", f"v{MAIN_V}")
        self.assertEqual(code, NOT_FOUND, err)
        self.assert_refused(before, code, err, "has no asset for linux/amd64", stray.name)

    def test_gone_repository_names_the_continuations(self):
        # the old default: router-for-me/CLIProxyAPIPlus pinned at v6.9.28-0, answering 404 for everything
        self.configure(cliproxy_repository=GONE, cliproxy_version=f"v{OLD_V}")
        before = self.install_old()
        code, out, err = self.download()
        self.assertEqual(code, NOT_FOUND, err)
        self.assert_refused(before, code, err, "404", f"release v{OLD_V} of {GONE} not found (HTTP 404",
                            "the repository is gone or private (it was deleted in April 2026)")
        lines = err.splitlines()
        self.assertEqual([line.split(":", 1)[0] for line in lines], ["error", "hint"], err)
        hint = lines[1]
        self.assertIn(cliproxy_lines.continuations_text(GONE), hint)
        for name in (FORK, MAINLINE):
            self.assertIn(f"llm-router bootstrap download --repository {name}", hint)
        self.assertIn("GitHub Copilot", hint)
        self.assertIn("--archive", hint)
        self.assertEqual(self.server.hits(f"/repos/{GONE}"), 1)

    def test_the_continuation_command_works_as_written_with_the_old_pin(self):
        self.configure(cliproxy_repository=GONE, cliproxy_version=f"v{OLD_V}")
        publish(self.server, FORK, "7.1.68-5", self.assets, platforms=PLATFORMS)
        publish(self.server, FORK, FORK_V, self.assets, platforms=PLATFORMS)  # latest
        self.install_old()
        code, out, err = self.download("--repository", FORK)  # as the hint writes it: the pin is GONE's
        self.assertEqual(code, 0, err)
        self.assert_installed(out, err, FORK, FORK_V, PLUS_FORK_7, f"CLIProxyAPIPlus_{FORK_V}_linux_amd64.tar.gz",
                              "cli-proxy-api-plus")
        self.assertIn(f"cliproxy_repository: {FORK}", err)
        self.assertIn(f"cliproxy_version: v{FORK_V}", err)

    def test_missing_tag_of_a_live_repository_is_not_called_gone(self):
        publish(self.server, FORK, FORK_V, self.assets, platforms=PLATFORMS)
        self.configure(cliproxy_repository=FORK, cliproxy_version=f"v{OLD_V}")
        before = self.install_old()
        code, _, err = self.download()
        self.assertEqual(code, NOT_FOUND, err)
        self.assert_refused(before, code, err, "404", f"release v{OLD_V} of {FORK} not found (HTTP 404",
                            f"{FORK} has no release v{OLD_V}", "latest")
        self.assertNotIn("gone", err)


class DefaultRepositoryTest(LinesCase):
    def test_defaults_are_the_plus_fork_at_latest(self):
        self.assertEqual((self.cfg.bootstrap.cliproxy_repository, self.cfg.bootstrap.cliproxy_version),
                         (cliproxy_lines.DEFAULT_REPOSITORY, "latest"))
        self.assertEqual(cliproxy_lines.DEFAULT_REPOSITORY, FORK)

    def test_quick_start_download_with_the_defaults(self):
        publish(self.server, FORK, "7.1.68-5", self.assets, platforms=PLATFORMS)
        publish(self.server, FORK, FORK_V, self.assets, platforms=PLATFORMS, no_plugin=True)
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        manifest = self.manifest()
        self.assertEqual((manifest["repository"], manifest["version"], manifest["line"]),
                         (FORK, f"v{FORK_V}", PLUS_FORK_7))
        self.assertEqual(self.server.hits(GitHubServer.release_path(FORK, "latest")), 1)
        code, out, err = self.download()  # again: nothing to do
        self.assertEqual(code, 0, err)
        self.assertIn("is already installed", out)

    def test_example_config_uses_the_default_repository(self):
        example = config_mod.load(Path(__file__).resolve().parents[1] / "config" / "examples" / "routertool.yaml")
        self.assertEqual((example.bootstrap.cliproxy_repository, example.bootstrap.cliproxy_version),
                         (FORK, "latest"))


class CopilotOnMainlineTest(LinesCase):
    def test_copilot_login_is_refused_on_mainline_before_anything_starts(self):
        install_fake_binary(self.layout.cliproxy_binary, MAIN_V, line=MAINLINE_7)
        code, out, err = self.cli("auth", "copilot", "login", "--timeout", "5")
        self.assertEqual(code, NOT_FOUND, err)
        self.assertIn(f"error: the installed CLIProxyAPI mainline 7.x {MAIN_V} has no GitHub Copilot login", err)
        self.assertIn(FORK, err)
        self.assertIn(f"llm-router bootstrap download --repository {FORK}", err)
        self.assertFalse(self.layout.pid_file("cliproxyapi_plus").exists())  # no proxy was started
        events = [json.loads(line) for line in self.layout.events_log.read_text().splitlines()]
        self.assertEqual((events[-1]["event"], events[-1]["result"]), ("oauth_login", "failed"))

    def test_a_plus_fork_passes_the_line_check(self):
        from llm_router.auth import login

        install_fake_binary(self.layout.cliproxy_binary, FORK_V, line=PLUS_FORK_7)
        login.require_copilot_line(self.cfg)  # no error
        self.layout.cliproxy_binary.unlink()
        login.require_copilot_line(self.cfg)  # nothing installed: starting the proxy says so


class PickNamesTest(LinesCase):
    def test_binary_names_put_the_lines_own_first(self):
        plus = cliproxy_lines.parse_asset(f"CLIProxyAPIPlus_{FORK_V}_linux_amd64.tar.gz")
        main = cliproxy_lines.parse_asset(f"CLIProxyAPI_{MAIN_V}_windows_amd64.zip")
        self.assertEqual(bootstrap.binary_names(plus, "linux"), ("cli-proxy-api-plus", "cli-proxy-api"))
        self.assertEqual(bootstrap.binary_names(main, "windows"), ("cli-proxy-api.exe", "cli-proxy-api-plus.exe"))

    def test_fake_binary_script_is_the_mainline_program(self):
        self.assertIn("cli-proxy-api 7.2.140", fake_binary_script(MAIN_V, line=MAINLINE_7))


def tar_gz(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


if __name__ == "__main__":
    import unittest

    unittest.main()
