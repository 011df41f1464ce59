"""One Lambda execution environment: run as `python -I lambda_worker.py` by `localcloud.lambda_runtime`.

It imports the handler once (the cold start), then serves invocations read as JSON lines from its
stdin and answers each with one JSON line on its stdout. The handler's own prints and logs go to
stderr, as they go to CloudWatch on AWS, so they can never corrupt the protocol. Standalone on
purpose: `-I` keeps the gateway's PYTHONPATH and this directory off sys.path, so the function's code
directory comes first and only the interpreter's site-packages stand behind it (like the Lambda runtime's
bundled packages).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import traceback


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_version = "$LATEST"
    identity = None
    client_context = None

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        env = os.environ
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.memory_limit_in_mb = int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = env["LOCALCLOUD_FUNCTION_ARN"]
        self.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.aws_request_id = request_id
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def main() -> None:
    # The protocol keeps private copies of fds 0 and 1; the handler's stdout is redirected to stderr.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    # A fresh interpreter (`python -I`): its sys.stdout is the TextIOWrapper over fd 1.
    assert isinstance(sys.stdout, io.TextIOWrapper)
    sys.stdout.reconfigure(line_buffering=True)

    def reply(message: dict) -> None:
        try:
            line = json.dumps(message, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            line = json.dumps({"ok": False, "error": _error(exc, "Runtime.MarshalError")})
        replies.write(line.encode() + b"\n")
        replies.flush()

    task_root = os.environ["LAMBDA_TASK_ROOT"]
    # Behind the task root only the interpreter's own directories: the repository's editable install
    # (its .pth entries, outside the venv) must not fill in for what the zip lacks.
    interpreter_dirs = {sys.prefix, sys.base_prefix}
    sys.path[:] = [task_root] + [
        p
        for p in sys.path
        if p != task_root
        and any(os.path.commonpath([p, d]) == d for d in interpreter_dirs if os.path.isabs(p))
    ]
    os.chdir(task_root)
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # noqa: BLE001 (Lambda reports an init failure on the invocation that triggered it)
        error_type = (
            "Runtime.HandlerNotFound" if isinstance(exc, AttributeError) else "Runtime.ImportModuleError"
        )
        reply({"ready": False, "error": _error(exc, error_type)})
        return
    reply({"ready": True})

    for line in requests:
        request = json.loads(line)
        context = LambdaContext(request["request_id"], request["deadline_ms"])
        try:
            result = handler(request["event"], context)
        except Exception as exc:  # noqa: BLE001 (any handler error is the invocation's error, as on Lambda)
            traceback.print_exc()
            reply({"ok": False, "error": _error(exc)})
            continue
        except BaseException as exc:  # noqa: BLE001 (SystemExit and the like end the execution environment)
            reply({"ok": False, "error": _error(exc, "Runtime.ExitError")})
            return
        reply({"ok": True, "result": result})


if __name__ == "__main__":
    main()
