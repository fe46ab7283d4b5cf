"""``python -m serving.server`` and ``python -m serving.client`` as processes, the port file,
plus bind errors."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from serving_helpers import (
    WAIT_S,
    add_version,
    assert_quiet_start,
    command_env,
    photo,
    tiny_export,
    wait_until,
)

from serving import CONFIG_DIR, client
from serving import server as server_cli
from serving.model_config import ModelConfig
from serving.ports import PortFile
from serving.server import ModelServer

ROOT = os.path.dirname(CONFIG_DIR)


def run_module(*args, timeout=WAIT_S):
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=command_env(),
    )


@pytest.mark.slow
def test_server_and_client_command_lines(tmp_path_factory, tmp_path, capsys):
    """A real server on 127.0.0.1 (``--port 0``: both ports free ones, written to the port
    file), the client finding it through ``--port-file``; SIGTERM stops it and removes the
    file. Every wait is bounded, and the server is killed if the test fails first."""
    base = str(tmp_path / "export")
    add_version(tiny_export(tmp_path_factory)[1], base, 1)
    port_file = tmp_path / "ports.json"
    log_path = tmp_path / "server.log"
    images = []
    for i, fmt in enumerate(("JPEG", "PNG")):
        path = tmp_path / f"photo{i}.{fmt.lower()}"
        path.write_bytes(photo(i, fmt))
        images.append(str(path))
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.server",
                "--model-base-path",
                base,
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--batching-parameters-file",
                os.path.join(CONFIG_DIR, "batching_parameters.txt"),
            ],
            cwd=ROOT,
            env=command_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_file.exists() or server.poll() is not None, "the port file")
        assert server.poll() is None, log_path.read_text()
        ports = json.loads(port_file.read_text())
        assert set(ports) == {"host", "grpc_port", "rest_port", "pid"}
        assert ports["host"] == "127.0.0.1" and ports["pid"] == server.pid
        assert 0 < ports["grpc_port"] != ports["rest_port"] > 0, "--port 0 picks both"
        grpc_target = f"127.0.0.1:{ports['grpc_port']}"
        rest_url = f"http://127.0.0.1:{ports['rest_port']}"

        # the module as a process, once, finding the server through the port file
        out = run_module(
            "serving.client", "--port-file", str(port_file), "--timeout", "60", "predict", *images
        )
        assert out.returncode == 0, out.stderr
        assert_quiet_start(out.stderr)
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [line["image"] for line in lines] == images
        for line in lines:
            assert (line["model_name"], line["model_version"]) == ("fashion", 1)
            assert len(line["heads"]) == 6
            for top in line["heads"].values():
                assert set(top[0]) == {"class_index", "class_name", "probability"}

        # the same main() in-process for the other commands; REST names the version too
        code, lines = client_main(
            capsys,
            *("--protocol", "rest", "--port-file", str(port_file), "--timeout", "60"),
            *("predict", "--top-k", "2", *images),
        )
        assert code == 0
        for line in map(json.loads, lines.splitlines()):
            assert line["model_version"] == 1 and len(line["heads"]) == 6
            assert all(len(top) == 2 for top in line["heads"].values())
        code, out = client_main(capsys, "--target", grpc_target, "--version", "1", "status")
        assert code == 0
        assert json.loads(out)["model_version_status"][0]["state"] == "AVAILABLE"
        code, out = client_main(capsys, "--protocol", "rest", "--rest-url", rest_url, "metadata")
        assert (
            code == 0
            and "predict_examples" in json.loads(out)["metadata"]["signature_def"]["signature_def"]
        )
        code, err = client_main(capsys, "--target", grpc_target, "--model-name", "shoes", "status")
        assert code == 1
        assert "NOT_FOUND" in err and "'shoes'" in err

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=WAIT_S) == 0, log_path.read_text()
        text = log_path.read_text()
        assert "stopped" in text
        assert not port_file.exists(), "the server removes its port file on exit"
        assert_quiet_start(text)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=60)


def client_main(capsys, *argv):
    """(exit code, stdout or, on failure, stderr) of ``serving.client.main``."""
    capsys.readouterr()
    code = client.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out if code == 0 else captured.err


def test_server_binds_loopback_by_default(tmp_path):
    args = server_cli.build_parser().parse_args(["--model-base-path", str(tmp_path)])
    assert (args.host, args.port, server_cli.rest_port_from_args(args)) == ("127.0.0.1", 8500, 8501)
    assert ModelServer([ModelConfig("fashion", str(tmp_path))]).host == "127.0.0.1"


def test_port_zero_picks_the_rest_port_too(tmp_path):
    for flags, rest_port in (
        (["--port", "0"], 0),
        (["--port", "0", "--rest-api-port", "8601"], 8601),
        (["--port", "8600"], 8501),
        (["--rest-api-port", "0"], 0),
        (["--port", "0", "--no-rest"], None),
    ):
        args = server_cli.build_parser().parse_args(["--model-base-path", str(tmp_path), *flags])
        assert server_cli.rest_port_from_args(args) == rest_port, flags


def test_port_file_round_trip(tmp_path):
    path = str(tmp_path / "ports.json")
    ports = PortFile("127.0.0.1", 41231, 41232, pid=os.getpid())
    ports.write(path)
    assert json.loads(open(path).read()) == {
        "host": "127.0.0.1",
        "grpc_port": 41231,
        "rest_port": 41232,
        "pid": os.getpid(),
    }
    assert os.listdir(tmp_path) == ["ports.json"], "no temporary file left behind"
    assert PortFile.read(path) == ports
    assert (ports.grpc_target, ports.rest_url) == ("127.0.0.1:41231", "http://127.0.0.1:41232")
    wildcard = PortFile("::", 1, None, pid=1)
    assert (wildcard.grpc_target, wildcard.rest_url) == ("[::1]:1", None)
    assert not PortFile("127.0.0.1", 1, 2, pid=os.getpid() + 1).remove(path), "not its own file"
    assert ports.remove(path) and not os.path.exists(path)
    assert not ports.remove(path), "already gone"
    for text, message in (
        ("not json", "not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"host": "h", "grpc_port": "1", "rest_port": null, "pid": 1}', "grpc_port = '1'"),
        ('{"host": "h", "grpc_port": 1, "rest_port": true, "pid": 1}', "rest_port = True"),
        ('{"host": "h", "grpc_port": 1, "rest_port": 2}', "pid = None"),
    ):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            PortFile.read(str(tmp_path / "bad.json"))


def test_command_lines_reject_bad_input(capsys, tmp_path):
    code = server_cli.main(["--model-base-path", str(tmp_path), "--max-batch-size", "4"])
    assert code == 2
    assert "--max-batch-size need --enable-batching" in capsys.readouterr().err
    for flag, value, message in (
        ("--max-examples-per-request", "0", "max_examples_per_request = 0 must be"),
        ("--max-image-pixels", "-1", "max_image_pixels = -1 must be"),
        ("--rest-read-timeout-seconds", "0", "rest_read_timeout_seconds = 0.0 must be > 0"),
        ("--load-retry-max-interval-seconds", "0", "load_retry_max_interval_seconds = 0.0"),
    ):
        code = server_cli.main(["--model-base-path", str(tmp_path), flag, value])
        assert code == 2 and message in capsys.readouterr().err, flag
    code = server_cli.main(["--model-config-file", str(tmp_path / "none.config")])
    assert code == 2 and "none.config" in capsys.readouterr().err
    code, err = client_main(capsys, "predict", str(tmp_path / "missing.jpg"))
    assert code == 2 and "missing.jpg" in err
    code, err = client_main(capsys, "--port-file", str(tmp_path / "no-ports.json"), "status")
    assert code == 2 and "no-ports.json" in err
    PortFile("127.0.0.1", 8500, None, pid=1).write(str(tmp_path / "ports.json"))
    for flags, message in (
        (["--target", "127.0.0.1:1"], "give --port-file or --target, not both"),
        (["--protocol", "rest"], "the server has no REST port (--no-rest)"),
    ):
        code, err = client_main(
            capsys, "--port-file", str(tmp_path / "ports.json"), *flags, "status"
        )
        assert code == 2 and message in err, flags
    with pytest.raises(SystemExit):
        client.main(["--version", "1", "--label", "stable", "status"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_busy_port_is_reported(tmp_path_factory, tmp_path):
    base = str(tmp_path / "export")
    add_version(tiny_export(tmp_path_factory)[1], base, 1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        for grpc_port, rest_port, what in ((port, None, "gRPC"), (0, port, "REST")):
            server = ModelServer(
                [ModelConfig("fashion", base)], grpc_port=grpc_port, rest_port=rest_port
            )
            with pytest.raises(OSError, match=f"cannot bind {what} to 127.0.0.1:{port}"):
                server.start()
            server.stop()
            assert server.managers["fashion"].available_versions() == [], "nothing was loaded"
