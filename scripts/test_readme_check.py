"""Self-test of scripts/readme_check.py: a README example that lies must fail, naming its line.

    python3 scripts/test_readme_check.py
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import readme_check as rc  # noqa: E402

DOC = """# Title

<!-- readme-test: run -->
```sh
echo 1024                     # → 1024
printf '3\\nerror: X\\n'; false      # a note
# 3
# error: X
echo "a # not a comment"      # → a # not a comment
for w in b c; do
  echo $w
done
# b
# c
```

<!-- readme-test: skip: needs a cluster -->
```sh
kubectl apply -f .
```

```text
not shell, no marker needed
```
"""


def blocks(text=DOC):
    return rc.read_blocks("DOC.md", text)


class Parsing(unittest.TestCase):
    def test_commands_and_their_output(self):
        run, skip = blocks()
        cmds = rc.parse_commands(run)
        self.assertEqual([c.line for c in cmds], [5, 6, 9, 10])
        self.assertEqual(cmds[0].expected, ["1024"])
        self.assertEqual(cmds[1].expected, ["3", "error: X"])
        self.assertEqual(cmds[2].text, 'echo "a # not a comment"')
        self.assertEqual(cmds[3].expected, ["b", "c"])
        self.assertEqual(skip.options(), {"skip": "needs a cluster"})

    def test_an_unmarked_shell_block_is_an_error(self):
        with self.assertRaisesRegex(rc.CheckError, r"DOC.md:3 .*no marker"):
            blocks("# T\n\n```sh\necho hi\n```\n")

    def test_a_block_without_a_language_is_an_error(self):
        with self.assertRaisesRegex(rc.CheckError, r"DOC.md:1: .*without a language"):
            blocks("```\nls\n```\n")

    def test_background_commands(self):
        block = blocks("<!-- readme-test: run -->\n```sh\nnode server.js --port 1 &\ntrue && true\n```\n")[0]
        first, second = rc.parse_commands(block)
        self.assertTrue(first.background)
        self.assertFalse(second.background)
        self.assertEqual(rc.ready_test(first), "log:listening on")


class Matching(unittest.TestCase):
    def test_ellipsis_and_whitespace(self):
        self.assertTrue(rc.matches(["a  …  z"], ["a b c z"]))
        self.assertTrue(rc.matches(["…", "last"], ["x", "y", "last"]))
        self.assertFalse(rc.matches(["one"], ["one", "two"]))
        self.assertFalse(rc.matches(["…", "last"], ["last", "more"]))

    def test_vary_and_order(self):
        import re
        vary = re.compile(r"127\.0\.0\.1:\d+")
        self.assertTrue(rc.matches(["at 127.0.0.1:1"], ["at 127.0.0.1:2"], vary))
        self.assertFalse(rc.matches(["a", "b"], ["b", "a"]))
        self.assertTrue(rc.matches(["a", "b"], ["b", "a"], any_order=True))

    def test_cargo_status_lines_are_not_output(self):
        self.assertEqual(rc.program_output("    Finished `release`\n     Running `x`\n15\n"), ["15"])


class Running(unittest.TestCase):
    def run_doc(self, text):
        with tempfile.TemporaryDirectory() as d:
            work = os.path.join(d, "work")
            os.makedirs(work)
            return rc.run_all(blocks(text), d, work, log=lambda _: None)

    def test_a_true_readme_passes(self):
        failures, checked = self.run_doc(DOC)
        self.assertEqual(failures, [])
        self.assertEqual(checked, 4)

    def test_a_broken_example_names_its_line(self):
        failures, _ = self.run_doc(DOC.replace("# → 1024", "# → 1025"))
        self.assertEqual(len(failures), 1)
        self.assertIn("DOC.md:5: `echo 1024` printed something else", failures[0])
        self.assertIn("1025", failures[0])

    def test_a_wrong_exit_status_fails(self):
        failures, _ = self.run_doc(DOC.replace("# error: X", "# no error"))
        self.assertEqual(len(failures), 1)
        self.assertIn("DOC.md:6: `printf '3\\nerror: X\\n'; false` printed something else", failures[0])


if __name__ == "__main__":
    unittest.main()
