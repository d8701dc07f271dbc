#!/bin/sh
# Image functions: the handler is the first argument (the image's CMD). Under `sam local` the
# runtime interface emulator runs this script; on Lambda the service provides the runtime API.
# As in the Lambda base, the task root (the function's code) and /opt/python (layers) are importable.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
exec /var/lang/bin/python3 /var/runtime/standin_runtime.py "$@"
