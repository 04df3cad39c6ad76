"""nbgrader's execution kernel, started inside the submission's sandbox.

:class:`SandboxedKernelManager` is jupyter_client's kernel manager with two changes: the
kernel command is wrapped by :meth:`bncourse.grading.isolation.Sandbox.command`, and the
kernel talks to the grader over ``ipc`` sockets in the sandbox's scratch directory (its
network namespace has no usable loopback, so TCP cannot work). The notebook's kernel spec
is ignored: every submission runs in this course's Python, whatever its metadata says.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Any

KERNEL_NAME = "python3"


class SandboxedKernelManager(AsyncKernelManager):
    """An ipykernel in a :class:`~bncourse.grading.isolation.Sandbox` (set ``sandbox``)."""

    sandbox = Any(help="The entered Sandbox the kernel runs in.")

    def __init__(self, **kwargs):
        kwargs["kernel_name"] = KERNEL_NAME
        super().__init__(**kwargs)
        runtime = Path(self.sandbox.home) / ".kernel"
        runtime.mkdir(exist_ok=True)
        os.chown(runtime, self.sandbox.uid, self.sandbox.uid)
        self.transport = "ipc"
        self.ip = str(runtime / "k")
        self.connection_file = str(runtime / "kernel.json")

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        # written by the grader, read by the kernel as the sandbox's user
        os.chown(self.connection_file, self.sandbox.uid, self.sandbox.uid)

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        # ipykernel's own launcher, from the course's virtual environment; interrupts go
        # as messages because signals cannot cross into the sandbox's session
        self.kernel_spec.interrupt_mode = "message"
        argv = [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            self.connection_file,
            *(extra_arguments or []),
        ]
        return self.sandbox.command(argv)
