"""`check security` on a repo with planted violations, on a clean one, and with --fix."""
from __future__ import annotations

import json
import subprocess
import unittest

from tests.support import REPO, TempRepo

FAKE_KEY = "sk-proj-" + "A1b2C3d4" * 6  # built at run time so this file holds no key-shaped literal
PRIVATE_KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"


class SecurityCheckTest(TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        self.git("init", "-q")
        (self.root / ".gitignore").write_text((REPO / ".gitignore").read_text())

    def git(self, *args):
        subprocess.run(["git", "-C", str(self.root), *args], check=True, capture_output=True)

    def track(self, name, text):
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.git("add", "-f", name)

    def test_clean_repo_passes(self):
        self.track("README.md", "hello\n")
        self.track("config/examples/routertool.yaml", "config_version: 2\n")
        code, out, err = self.cli("check", "security")
        self.assertEqual(code, 0, out + err)
        self.assertIn("no findings", out)

    def test_planted_violations_are_each_reported(self):
        self.track("config/routertool.yaml", self.config_path.read_text())
        self.track(".env", "X=1\n")
        self.track(".router/auths/codex-a@b.c-plus.json", "{}\n")
        self.track("deploy/id_ed25519.txt", PRIVATE_KEY)
        self.track("scripts/run.sh", f"export CUSTOM_API_KEY={FAKE_KEY}\n")
        self.track("scripts/allowed.sh", f"KEY={FAKE_KEY}  # pragma: allowlist secret\n")
        (self.root / ".gitignore").write_text("__pycache__/\n")
        auths = self.root / ".router" / "auths"
        (auths / "github-copilot-me.json").write_text("{}")
        (auths / "github-copilot-me.json").chmod(0o644)
        auths.chmod(0o755)
        code, out, err = self.cli("check", "security", "--json")
        self.assertEqual(code, 1, err)
        findings = json.loads(out)["data"]["findings"]
        failed = {(f["check"], f["path"]) for f in findings if f["status"] == "fail"}
        self.assertIn(("tracked-sensitive-file", "config/routertool.yaml"), failed)
        self.assertIn(("tracked-sensitive-file", ".env"), failed)
        self.assertIn(("tracked-sensitive-file", ".router/auths/codex-a@b.c-plus.json"), failed)
        self.assertIn(("secret-in-tracked-file", "deploy/id_ed25519.txt"), failed)
        self.assertIn(("secret-in-tracked-file", "scripts/run.sh"), failed)
        self.assertNotIn(("secret-in-tracked-file", "scripts/allowed.sh"), failed)
        self.assertIn(("gitignore", ".gitignore"), failed)
        self.assertIn(("permissions", str(auths)), failed)
        self.assertIn(("permissions", str(auths / "github-copilot-me.json")), failed)
        for f in findings:
            if f["status"] == "fail":
                self.assertTrue(f["fix"], f)
        self.assertNotIn(FAKE_KEY, out)  # findings name the file and line, never the secret

        code, out, err = self.cli("check", "security", "--fix")
        self.assertEqual(code, 1)  # tracked files are never untracked or deleted by --fix
        self.assertTrue((self.root / "config/routertool.yaml").exists())
        self.assertEqual((auths / "github-copilot-me.json").stat().st_mode & 0o777, 0o600)
        self.assertEqual(auths.stat().st_mode & 0o777, 0o700)
        self.assertIn("/.router/", (self.root / ".gitignore").read_text())
        self.assertIn("__pycache__/", (self.root / ".gitignore").read_text())

        self.git("rm", "-q", "--cached", "config/routertool.yaml", ".env", ".router/auths/codex-a@b.c-plus.json",
                 "deploy/id_ed25519.txt", "scripts/run.sh")
        code, out, err = self.cli("check", "security")
        self.assertEqual(code, 0, out + err)

    def test_runs_without_a_config(self):
        self.config_path.unlink()
        code, out, err = self.cli("check", "security")
        self.assertEqual(code, 0, out + err)

    def test_without_a_config_the_default_layout_is_checked(self):
        self.config_path.unlink()
        auths = self.root / ".router" / "auths"
        auths.mkdir(parents=True, mode=0o700)
        auth_file = auths / "codex-me@example.com-plus.json"
        auth_file.write_text("{}")
        auth_file.chmod(0o644)
        code, out, err = self.cli("check", "security", "--json")
        self.assertEqual(code, 1, out + err)
        failed = {(f["check"], f["path"]) for f in json.loads(out)["data"]["findings"] if f["status"] == "fail"}
        self.assertEqual(failed, {("permissions", str(auth_file))})
        code, out, err = self.cli("check", "security", "--fix")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(auth_file.stat().st_mode & 0o777, 0o600)
        self.assertEqual(auth_file.read_text(), "{}")


if __name__ == "__main__":
    unittest.main()
