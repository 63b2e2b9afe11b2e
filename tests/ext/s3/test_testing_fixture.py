"""The ``moto_server`` fixture of ``flowstone.testing``, as a user's suite uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import flowstone as fs

pytest_plugins = ["pytester"]


def test_a_user_suite_tests_its_s3_pipeline_on_the_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = str(Path(fs.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", src)  # this checkout's flowstone in the subprocess
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        import os

        import flowstone as fs
        from flowstone.ext.s3 import S3IOManager

        @fs.asset(io_manager="s3")
        async def totals() -> dict:
            return {"eu": 3}

        async def test_stored_on_s3(moto_server):
            assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
            bucket = moto_server.create_bucket()
            manager = S3IOManager(bucket, "p", endpoint_url=moto_server.endpoint_url)
            async with fs.Runtime(io_managers={"s3": manager}) as rt:
                result = await rt.materialize([totals])
            assert result["totals"] == {"eu": 3}
            listed = moto_server.client("s3").list_objects_v2(Bucket=bucket)
            assert [o["Key"] for o in listed["Contents"]] == ["p/totals/value"]

        def test_the_same_server_for_the_session(moto_server):
            assert moto_server.client("dynamodb").list_tables()["TableNames"] == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_importing_the_plugin_does_not_import_moto() -> None:
    src = str(Path(fs.__file__).resolve().parents[1])
    code = "import sys, flowstone.testing; print('moto' in sys.modules, 'boto3' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": src, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
