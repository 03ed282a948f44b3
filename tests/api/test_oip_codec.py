"""The Open Inference Protocol wire format, binary extension included."""

import json

import numpy as np
import pytest

from dxserve.api.oip import encode_response, parse_request
from dxserve.errors import InvalidInput


def binary_request(x: np.ndarray, outputs: list[dict]) -> tuple[bytes, str]:  # type: ignore[type-arg]
    header = json.dumps(
        {
            "id": "r1",
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": outputs,
        }
    ).encode()
    return header + x.tobytes(), str(len(header))


def test_binary_request_and_mixed_response() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    body, length = binary_request(
        x, [{"name": "p", "parameters": {"binary_data": True}}, {"name": "q"}]
    )
    request = parse_request(body, length)
    assert request.id == "r1" and np.array_equal(request.inputs[0].array, x)
    assert request.outputs == {"p": True, "q": False}
    out = {
        "p": np.array([[0.5], [0.25]], dtype=np.float32),
        "q": np.array([[1.0], [2.0]], dtype=np.float32),
    }
    payload, headers = encode_response("m", 3, request, out)
    split = int(headers["inference-header-content-length"])
    header = json.loads(payload[:split])
    assert header["model_version"] == "3" and header["id"] == "r1"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert np.array_equal(np.frombuffer(payload[split:], dtype=np.float32), [0.5, 0.25])
    assert header["outputs"][1]["data"] == [1.0, 2.0]


def test_json_request_and_response() -> None:
    body = json.dumps(
        {"inputs": [{"name": "a", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    ).encode()
    request = parse_request(body, None)
    assert request.inputs[0].array.dtype == np.int64 and request.inputs[0].array.shape == (2, 2)
    payload, headers = encode_response("m", 1, request, {"o": np.ones((2, 1), dtype=np.float32)})
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["outputs"][0]["data"] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("FP32", [[0.5, -1.25], [3, 1e-3]], np.array([[0.5, -1.25], [3, 1e-3]], np.float32)),
        ("FP16", [1, 2.5, -3, 4], np.array([[1, 2.5], [-3, 4]], np.float16)),
        ("INT8", [-128, 127, 0, 5], np.array([[-128, 127], [0, 5]], np.int8)),
        ("UINT64", [0, 2**64 - 1, 7, 8], np.array([[0, 2**64 - 1], [7, 8]], np.uint64)),
        ("INT32", [1.0, 2.0, 3.0, 4.0], np.array([[1, 2], [3, 4]], np.int32)),  # whole floats
        ("BOOL", [True, False, False, True], np.array([[1, 0], [0, 1]], np.bool_)),
    ],
)
def test_json_data_of_every_kind(datatype: str, data: list, expected: np.ndarray) -> None:  # type: ignore[type-arg]
    """Numbers are read straight into the array (nested or flat); what is not all numbers of
    the datatype's kind (booleans, floats for integers) is converted as numpy converts it."""
    body = json.dumps(
        {"inputs": [{"name": "a", "datatype": datatype, "shape": [2, 2], "data": data}]}
    ).encode()
    array = parse_request(body, None).inputs[0].array
    assert array.dtype == expected.dtype and array.shape == (2, 2)
    np.testing.assert_array_equal(array, expected)


def test_keys_with_a_nul_are_read_too() -> None:
    """simdjson cannot look such a key up by name (found by schemathesis)."""
    body = (
        b'{"x\\u0000": 1, "inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [2]}]}'
    )
    assert parse_request(body, None).inputs[0].array.tolist() == [2.0]
    with pytest.raises(InvalidInput):
        parse_request(b'{"inputs": [{"n\\u0000": 1}]}', None)


def test_many_json_requests_in_a_row_and_one_kept() -> None:
    """Each request's arrays stay valid while later requests are parsed."""
    bodies = [
        json.dumps(
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [3], "data": [i, i, i]}]}
        ).encode()
        for i in range(3)
    ]
    requests = [parse_request(body, None) for body in bodies]
    assert [float(r.inputs[0].array[0]) for r in requests] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("body", "length"),
    [
        (b"not json", None),
        (b"{}", None),
        (b"[1, 2]", None),
        (b"\xff\xfe{}", None),  # not UTF-8
        (b"[" * 5000 + b"]" * 5000, None),  # nested too deeply
        (json.dumps({"inputs": [1, "x"]}).encode(), None),
        (
            json.dumps(
                {"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
            ).encode(),
            None,
        ),
        (
            json.dumps(
                {"inputs": [{"name": "a", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}
            ).encode(),
            None,
        ),
        (
            json.dumps(
                {"inputs": [{"name": "a", "datatype": "FP32", "shape": [-1], "data": [1]}]}
            ).encode(),
            None,
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "a",
                            "datatype": "FP32",
                            "shape": [2],
                            "parameters": {"binary_data_size": 8},
                        }
                    ]
                }
            ).encode(),
            "9999",
        ),
        (b'{"inputs": []}xx', "14"),
        (
            json.dumps(
                {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": ["x"]}]}
            ).encode(),
            None,
        ),
    ],
)
def test_malformed_requests_are_invalid_input(body: bytes, length: str | None) -> None:
    with pytest.raises(InvalidInput):
        parse_request(body, length)


def test_unknown_output_requested() -> None:
    request = parse_request(
        json.dumps({"inputs": [], "outputs": [{"name": "nope"}]}).encode(), None
    )
    with pytest.raises(InvalidInput, match="unknown output"):
        encode_response("m", 1, request, {"p": np.zeros(1, dtype=np.float32)})
