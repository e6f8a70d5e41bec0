#!/usr/bin/env python3
"""Self-test of deploy/check.py: the shipped files pass, and each kind of mistake is caught.

    .venv/bin/python deploy/test_check.py
"""

import copy
import os
import stat
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # noqa: E402

K8S = check.DEPLOY / "kubernetes"
UNIT = check.DEPLOY / "systemd" / "calcmesh-calculator.service"


def k8s_problems(mutate=None) -> list[str]:
    """Problems of the shipped manifests after `mutate(objects by (kind, name))`."""
    problems = check.Problems()
    docs = check.load_kubernetes(K8S, problems)
    docs = [check.Doc(d.path, d.index, copy.deepcopy(d.obj)) for d in docs]
    if mutate:
        mutate({(d.kind, d.name): d.obj for d in docs})
    check.check_kubernetes(docs, problems)
    return problems


def container(objs, name):
    return objs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]


def unit_problems(text: str) -> list[str]:
    problems = check.Problems()
    check.check_unit(UNIT, text, problems)
    return problems


class ShippedFiles(unittest.TestCase):
    def test_pass_offline(self):
        self.assertEqual(check.run(), [])

    def test_durations(self):
        self.assertEqual(check.parse_duration("10s"), 10)
        self.assertEqual(check.parse_duration("1m 30s"), 90)
        self.assertEqual(check.parse_duration("500ms"), 0.5)
        self.assertEqual(check.parse_duration("30", bare_unit=1.0), 30)
        self.assertEqual(check.parse_duration("1min 5s", bare_unit=1.0), 65)
        self.assertIsNone(check.parse_duration("soon"))


class KubernetesMistakes(unittest.TestCase):
    def assertCaught(self, mutate, *fragments):
        found = "\n".join(k8s_problems(mutate))
        for fragment in fragments:
            self.assertIn(fragment, found)

    def test_selector_not_matching_template(self):
        def mutate(objs):
            objs[("Deployment", "calculator")]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "calc"
        self.assertCaught(mutate, "spec.selector.matchLabels", "does not match the template labels",
                          "Service calculator spec.selector", "PodDisruptionBudget calculator")

    def test_probe_missing_or_on_the_wrong_port(self):
        def mutate(objs):
            del container(objs, "calculator")["livenessProbe"]
            container(objs, "evaluator")["readinessProbe"]["grpc"]["port"] = 50050
        self.assertCaught(mutate, "container calculator livenessProbe.grpc.port: missing",
                          "readinessProbe.grpc.port: 50050, but --health-listen serves health on port 50081")

    def test_grace_period_not_covered(self):
        def mutate(objs):
            args = container(objs, "calculator")["args"]
            args[args.index("--grace-period=10s")] = "--grace-period=1m"
        self.assertCaught(mutate, "Deployment calculator spec.template.spec.terminationGracePeriodSeconds",
                          "does not cover the preStop sleep (5 s) + --grace-period (60 s)")

    def test_security_and_resources(self):
        def mutate(objs):
            c = container(objs, "evaluator")
            del c["securityContext"]["runAsNonRoot"]
            del objs[("Deployment", "evaluator")]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
            del c["resources"]["limits"]["memory"]
            del c["image"]
        self.assertCaught(mutate, "securityContext.runAsNonRoot", "resources.limits.memory: missing",
                          "container evaluator image: missing")

    def test_dns_target_needs_a_headless_service(self):
        def mutate(objs):
            del objs[("Service", "calculator")]["spec"]["clusterIP"]
        self.assertCaught(mutate, "Service calculator spec.clusterIP: must be None")

    def test_undefined_variable_and_unmounted_file(self):
        def mutate(objs):
            c = container(objs, "evaluator")
            c["env"] = [e for e in c["env"] if e["name"] != "POD_NAMESPACE"]
            c["args"].append("--policy=/etc/calcmesh/certs/policy.txt")
        self.assertCaught(mutate, "$(POD_NAMESPACE) is not in env",
                          "policy.txt is not among the Secret volume's items")

    def test_insecure_and_namespace(self):
        def mutate(objs):
            container(objs, "calculator")["args"].append("--insecure")
            objs[("Service", "evaluator")]["metadata"]["namespace"] = "prod"
        self.assertCaught(mutate, "args --insecure", "metadata.namespace: set")

    def test_pdb_that_blocks_every_eviction(self):
        def mutate(objs):
            spec = objs[("PodDisruptionBudget", "evaluator")]["spec"]
            del spec["maxUnavailable"]
            spec["minAvailable"] = 2
        self.assertCaught(mutate, "2 >= the 2 replicas of evaluator")


class SystemdMistakes(unittest.TestCase):
    def setUp(self):
        self.text = UNIT.read_text()

    def test_shipped_unit_passes(self):
        self.assertEqual(unit_problems(self.text), [])

    def test_timeout_shorter_than_the_grace_period(self):
        found = "\n".join(unit_problems(self.text.replace("TimeoutStopSec=30s", "TimeoutStopSec=5")))
        self.assertIn("TimeoutStopSec: 5 does not cover --grace-period (10 s)", found)

    def test_missing_section_setting_and_variable(self):
        text = self.text.replace("[Install]", "[Instal]").replace("MemoryDenyWriteExecute=yes\n", "")
        text = text.replace("${ADVERTISE_HOST}", "${ADVERTISED_HOST}")
        found = "\n".join(unit_problems(text))
        self.assertIn("[Install]: missing", found)
        self.assertIn("MemoryDenyWriteExecute: missing", found)
        self.assertIn("${ADVERTISED_HOST} is set by no Environment=", found)


class FlagDrift(unittest.TestCase):
    def test_flags_missing_from_help_are_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            fake = Path(tmp) / "calcmesh"
            # Help with only --listen and --grace-period; --admin appears in prose only.
            fake.write_text(
                f"#!{sys.executable}\n"
                "print('Usage: calcmesh serve X [OPTIONS]\\n\\nOptions:')\n"
                "print('      --listen <LISTEN>\\n          Address; see also --admin.\\n')\n"
                "print('      --grace-period <GRACE_PERIOD>\\n          Drain time.\\n')\n"
                "print('  -h, --help\\n          Print help')\n"
            )
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
            problems = check.Problems()
            used = [(UNIT, "[Service] ExecStart", "calculator",
                     ["/usr/local/bin/calcmesh", "serve", "calculator", "--listen", "0.0.0.0:1",
                      "--grace-period=10s", "--admin", "0.0.0.0:9090", "--health-listen=0.0.0.0:2"])]
            check.check_flags(str(fake), used, problems)
        found = "\n".join(problems)
        self.assertIn("ExecStart --admin: not an option of `calcmesh serve calculator`", found)
        self.assertIn("ExecStart --health-listen: not an option", found)
        self.assertNotIn("--listen:", found)
        self.assertNotIn("--grace-period:", found)

    def test_a_binary_that_does_not_run_is_a_problem(self):
        problems = check.Problems()
        check.check_flags(os.devnull + "/nope", [(UNIT, "x", "calculator", ["serve", "calculator"])], problems)
        self.assertIn("cannot run", "\n".join(problems))


if __name__ == "__main__":
    unittest.main()
