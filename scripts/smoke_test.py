"""Smoke test of a deployed stage: a teacher and a student in a fresh classroom exercise the protocol once.

    python scripts/smoke_test.py --env dev        # endpoint from the Terraform outputs, tokens minted (HS256)
    python scripts/smoke_test.py --env staging    # tokens from CLASSWIRE_SMOKE_TOKEN(2) + _CLASSROOM (RS256/JWKS)
    python scripts/smoke_test.py --url wss://... --token T --token2 S --classroom C

Tokens: for an environment that verifies HS256 (dev), the test signs two 5-minute tokens for a classroom
`smoke-<random>` with the key in the stack's Secrets Manager secret (output `jwt_secret_arn`); the caller
(CI's deploy role) needs secretsmanager:GetSecretValue on that secret and kms:Decrypt through Secrets Manager.
Environments verifying the identity provider's public keys (staging, prod) cannot be signed for here: the
identity provider issues a teacher and a student token for a dedicated smoke-test classroom, kept as the
GitHub Environment's secrets. Each check prints one line; the exit code is 0 only when all of them pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from websockets.asyncio.client import connect

from classwire_client import ClasswireClient
from localcloud.tokens import issue_token

TOKEN_LIFETIME_SECONDS = 300
CHECK_TIMEOUT_SECONDS = 15.0


class SmokeError(Exception):
    """The smoke test could not start (no endpoint, no token); distinct from a failed check."""


@dataclass
class Target:
    url: str
    classroom: str
    teacher_token: str
    student_token: str


@dataclass
class Report:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)


# -- tokens -------------------------------------------------------------------------------------------
def subject(token: str) -> str:
    """The token's user id: the client recognises its own acknowledgements by it (the server verifies the
    token; here it is only read)."""
    import jwt

    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub", ""))
    except jwt.PyJWTError:
        return ""


def signing_key(secret_arn: str, region: str, client=None) -> str:
    """The HS256 key from Secrets Manager (boto3 honours AWS_ENDPOINT_URL, so the emulator works too)."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager", region_name=region)
    try:
        value = client.get_secret_value(SecretId=secret_arn).get("SecretString", "")
    except Exception as error:  # botocore's errors are generated classes; the message says what failed
        raise SmokeError(f"cannot read the signing key {secret_arn}: {error}") from error
    if not value:
        raise SmokeError(
            f"the signing key {secret_arn} has no value yet (the identity provider team sets it)"
        )
    return value


def minted_target(url: str, key: str, *, issuer: str, audience: str) -> Target:
    classroom = f"smoke-{secrets.token_hex(6)}"
    suffix = secrets.token_hex(3)

    def mint(user: str, role: str, name: str) -> str:
        return issue_token(
            user,
            [classroom],
            role,
            name,
            key=key,
            issuer=issuer,
            audience=audience,
            lifetime_seconds=TOKEN_LIFETIME_SECONDS,
        )

    return Target(
        url=url,
        classroom=classroom,
        teacher_token=mint(f"smoke-teacher-{suffix}", "teacher", "smoke teacher"),
        student_token=mint(f"smoke-student-{suffix}", "student", "smoke student"),
    )


def resolve_target(args: argparse.Namespace) -> Target:
    token = args.token or os.environ.get("CLASSWIRE_SMOKE_TOKEN", "")
    token2 = args.token2 or os.environ.get("CLASSWIRE_SMOKE_TOKEN2", "")
    classroom = args.classroom or os.environ.get("CLASSWIRE_SMOKE_CLASSROOM", "")
    url = args.url
    outputs = None
    if not url:
        from scripts import stack_outputs

        try:
            outputs = stack_outputs.load(args.env, args.outputs_file)
        except stack_outputs.OutputsError as error:
            raise SmokeError(str(error)) from error
        url = outputs.websocket_url
    if token or token2:
        if not (token and token2 and classroom):
            raise SmokeError("explicit tokens need --token (teacher), --token2 (student) and --classroom")
        return Target(url=url, classroom=classroom, teacher_token=token, student_token=token2)
    if outputs is None or not outputs.jwt_secret_arn:
        raise SmokeError(
            "no tokens given and the stack has no HS256 signing secret to mint them with: set "
            "CLASSWIRE_SMOKE_TOKEN, CLASSWIRE_SMOKE_TOKEN2 and CLASSWIRE_SMOKE_CLASSROOM"
        )
    from classwire_infra.config import load

    jwt_config = load(args.env).jwt if args.env else None
    key = signing_key(outputs.jwt_secret_arn, outputs.region)
    return minted_target(
        url,
        key,
        issuer=jwt_config.issuer if jwt_config else "",
        audience=jwt_config.audience if jwt_config else "",
    )


# -- checks -------------------------------------------------------------------------------------------
async def _check(report: Report, name: str, step: Callable[[], Awaitable[str]]) -> bool:
    try:
        detail = await asyncio.wait_for(step(), CHECK_TIMEOUT_SECONDS)
        return report.record(name, True, detail)
    except Exception as error:  # noqa: BLE001 (every failure is one line of the report, whatever raised it)
        return report.record(name, False, f"{type(error).__name__}: {error}"[:300])


async def run_checks(target: Target, report: Report) -> Report:
    teacher = ClasswireClient(
        url=target.url,
        token=target.teacher_token,
        classroom=target.classroom,
        user_id=subject(target.teacher_token),
    )
    student = ClasswireClient(
        url=target.url,
        token=target.student_token,
        classroom=target.classroom,
        user_id=subject(target.student_token),
    )
    sent: dict = {}
    try:

        async def connect_both() -> str:
            await teacher.start()
            await student.start()
            return f"{target.url} classroom {target.classroom}"

        if not await _check(report, "teacher and student connect", connect_both):
            return report

        async def chat_delivered() -> str:
            text = f"smoke {secrets.token_hex(4)}"
            ack = await teacher.send("chat", {"text": text})
            assert ack is not None  # a persistent send returns its acknowledgement
            sent.update(ack)
            await student.wait_for_seq(ack["seq"])
            seen = [
                e
                for e in student.events
                if e.get("event") == "chat" and e.get("data", {}).get("text") == text
            ]
            if len(seen) != 1 or seen[0]["seq"] != ack["seq"] or seen[0]["eid"] != ack["eid"]:
                raise AssertionError(f"student saw {seen}, teacher's ack was seq {ack['seq']}")
            for client in (teacher, student):
                seqs = [e["seq"] for e in client.events]
                if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
                    raise AssertionError(f"events out of order: {seqs}")
            return f"seq {ack['seq']} for both, in order"

        await _check(report, "chat reaches both in order with the same seq", chat_delivered)

        async def roster() -> str:
            members = await student.who()
            roles = {m["userId"]: m["role"] for m in members}
            if sorted(roles.values()) != ["student", "teacher"]:
                raise AssertionError(f"roster is {members}")
            return f"{len(members)} members"

        await _check(report, "who lists teacher and student", roster)

        query = urlencode({"token": target.student_token, "classroom": target.classroom})
        async with connect(f"{target.url}?{query}", open_timeout=10, ping_interval=None) as raw:

            async def reply(frame: str, kind: str) -> dict:
                await raw.send(frame)
                while True:
                    message = json.loads(await raw.recv())
                    if isinstance(message, dict) and message.get("type") == kind:
                        return message

            async def sync_from_zero() -> str:
                page = await reply(json.dumps({"action": "sync", "since": 0}), "sync")
                eids = [e["eid"] for e in page.get("events", [])]
                if not sent or sent["eid"] not in eids:
                    raise AssertionError(f"sync since 0 returned {len(eids)} events without the chat")
                return f"{len(eids)} events, last {page.get('last')}"

            await _check(report, "sync from 0 returns the events", sync_from_zero)

            async def bad_frame() -> str:
                error = await reply("this is not json", "error")
                if error.get("code") != "bad_request":
                    raise AssertionError(f"error frame {error}")
                return "bad_request"

            await _check(report, "a bad frame gets an error frame", bad_frame)
    except Exception as error:  # noqa: BLE001 (a connection that broke outside a check)
        report.record("connection", False, f"{type(error).__name__}: {error}"[:300])
    finally:
        await teacher.close()
        await student.close()
    return report


def smoke(target: Target) -> Report:
    return asyncio.run(run_checks(target, Report()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", help="environment whose Terraform outputs name the endpoint")
    parser.add_argument("--outputs-file", type=Path, help="`terraform output -json` saved to a file")
    parser.add_argument("--url", help="the stage's wss:// URL (instead of the outputs)")
    parser.add_argument("--token", help="teacher token (or CLASSWIRE_SMOKE_TOKEN)")
    parser.add_argument("--token2", help="student token (or CLASSWIRE_SMOKE_TOKEN2)")
    parser.add_argument("--classroom", help="classroom the tokens grant (or CLASSWIRE_SMOKE_CLASSROOM)")
    args = parser.parse_args(argv)
    if not (args.env or args.outputs_file or args.url):
        parser.error("give --env, --outputs-file or --url")
    try:
        target = resolve_target(args)
    except SmokeError as error:
        print(f"FAIL  setup: {error}")
        return 1
    report = smoke(target)
    failed = sum(not ok for _, ok, _ in report.results)
    print(
        f"smoke test {'passed' if report.passed else 'FAILED'}: {len(report.results) - failed} passed, "
        f"{failed} failed"
    )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
