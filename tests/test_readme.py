"""The README's ``>>>`` examples run as doctests: each must print what the README shows.

The Keras example prints float32 values as the TensorFlow backend (the suite's default)
computes them; under JAX their last digit differs, so this test is not among those that
`make test` reruns there (it is not marked ``keras_backend``).
"""

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^\s*```")


def readme_doctest() -> doctest.DocTest:
    """Every ``>>>`` example of README.md, in order, as one doctest with one namespace.

    A Markdown fence closes a code block without a blank line, so doctest would read the
    closing ```` ``` ```` as part of the expected output: fence lines become empty lines,
    which end an example's output and keep every line number where it is in the file.
    """
    lines = README.read_text().splitlines(keepends=True)
    text = "".join("\n" if FENCE.match(line) else line for line in lines)
    return doctest.DocTestParser().get_doctest(text, {}, README.name, str(README), 0)


def test_every_readme_example_prints_what_the_readme_shows():
    test = readme_doctest()
    # Every prompt of the README is an example that runs (a line that is only a comment
    # is not one), and there are some: a README without any would pass vacuously.
    prompts = [
        line for line in README.read_text().splitlines() if re.match(r"\s*>>> (?!\s*#)", line)
    ]
    assert len(test.examples) == len(prompts) > 0
    report = []
    runner = doctest.DocTestRunner()
    runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, "".join(report)
