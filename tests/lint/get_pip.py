"""Stand-in for the pip bootstrap script that ansible-test downloads before it fills a venv.

``ansible-test sanity --venv`` fetches ``get-pip-<version>.py`` from ansible's CI file server,
which a machine that reaches only the package registries cannot do; ansible-test reads the
script from ``~/.ansible/test/cache/get_pip_<version>.py`` when it is there (``make lint``
puts this file there). Like get-pip, it installs pip into the running interpreter and then
the packages it is given (``pip==<version>``), from the package index pip is configured with.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip's own switches, not pip's: setuptools and wheel are never added here anyway.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
