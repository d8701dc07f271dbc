"""Flat normalisation, routing decisions and defect finding on synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from isrflow.calibration import routing
from isrflow.calibration.defects import boxes_of, fill_columns, find_defects
from isrflow.calibration.normalize import normalize
from isrflow.calibration.steps import isr_config_for, spec
from isrflow.model.errors import CalibrationError, ConfigError

# --- normalisation ---------------------------------------------------------------------------


def test_normalize_recovers_exposure_and_detector_scales():
    rng = np.random.default_rng(1)
    exposure = {e: rng.uniform(20000, 40000) for e in range(6)}
    response = {d: rng.uniform(0.8, 1.2) for d in range(9)}
    levels = {
        (d, e): (exposure[e] * response[d] * (1 + rng.normal(0, 1e-4)), 1000.0)
        for d in response
        for e in exposure
    }
    del levels[(3, 2)]  # a failed frame
    levels[(4, 1)] = (float("nan"), 1000.0)  # and an unusable one
    scales = normalize(levels)
    mean_g = np.average([response[d] for d in response], weights=[5 if d in (3, 4) else 6 for d in response])
    for e, value in scales.exposure.items():
        assert value == pytest.approx(exposure[e] * mean_g, rel=3e-4)
    for d, value in scales.detector.items():
        assert value == pytest.approx(response[d] / mean_g, rel=3e-4)
    # the detector-to-detector response survives dividing each frame by its exposure scale alone
    ratio = [levels[(d, 0)][0] / scales.exposure[0] / scales.detector[d] for d in response]
    assert np.allclose(ratio, 1.0, atol=5e-4)


def test_normalize_needs_usable_levels():
    with pytest.raises(CalibrationError, match="no flat frame"):
        normalize({(0, 1): (0.0, 10.0), (1, 1): (float("nan"), 10.0)})


# --- routing ---------------------------------------------------------------------------------

HSC_FRAME = 2048 * 4176 * 12  # bytes of one ISR'd HSC detector (image, mask, variance)


def test_small_combines_run_on_the_lambda():
    d = routing.choose_route(
        n_inputs=16,
        input_bytes=16 * HSC_FRAME,
        columns=2048,
        lambda_memory_mb=10240,
        lambda_timeout_s=900,
        throughput=150e6,
    )
    assert d.route == "lambda" and d.estimated_s == pytest.approx(16 * HSC_FRAME / 150e6, rel=1e-3)


def test_long_combines_go_to_fargate():
    # 1000 HSC frames: ~11 minutes at 150 MB/s, more than half of the 15-minute timeout
    d = routing.choose_route(
        n_inputs=1000,
        input_bytes=1000 * HSC_FRAME,
        columns=2048,
        lambda_memory_mb=10240,
        lambda_timeout_s=900,
        throughput=150e6,
    )
    assert d.route == "fargate" and "timeout" in d.reason
    # the threshold is TIME_SAFETY x the timeout
    limit = int(routing.TIME_SAFETY * 900 * 150e6)
    assert (
        routing.choose_route(
            n_inputs=10,
            input_bytes=limit,
            columns=2048,
            lambda_memory_mb=10240,
            lambda_timeout_s=900,
            throughput=150e6,
        ).route
        == "lambda"
    )
    assert (
        routing.choose_route(
            n_inputs=10,
            input_bytes=limit + 1000,
            columns=2048,
            lambda_memory_mb=10240,
            lambda_timeout_s=900,
            throughput=150e6,
        ).route
        == "fargate"
    )


def test_strips_that_do_not_fit_the_function_memory_go_to_fargate():
    # 3000 inputs of 4096 columns: a 16-row strip needs ~1.6 GB, more than a 1 GB function
    d = routing.choose_route(
        n_inputs=3000, input_bytes=1, columns=4096, lambda_memory_mb=1024, lambda_timeout_s=900
    )
    assert d.route == "fargate" and "MB" in d.reason and d.needed_mb > 1024
    assert (
        routing.choose_route(
            n_inputs=3000, input_bytes=1, columns=4096, lambda_memory_mb=10240, lambda_timeout_s=900
        ).route
        == "lambda"
    )


def test_forced_routes_and_throughput_override(monkeypatch):
    assert (
        routing.choose_route(
            n_inputs=2,
            input_bytes=1,
            columns=10,
            lambda_memory_mb=10240,
            lambda_timeout_s=900,
            forced="fargate",
        ).route
        == "fargate"
    )
    monkeypatch.setenv(routing.ENV_THROUGHPUT, "1")  # 1 MB/s
    assert (
        routing.choose_route(
            n_inputs=2, input_bytes=500e6, columns=10, lambda_memory_mb=10240, lambda_timeout_s=900
        ).route
        == "fargate"
    )


# --- step sets -------------------------------------------------------------------------------


def test_step_sets_follow_cp_pipe():
    bias, dark, flat = (isr_config_for(t) for t in ("bias", "dark", "flat"))
    for config in (bias, dark, flat):
        assert config.overscan.enabled and config.gain and config.variance
        assert not (
            config.linearity.enabled
            or config.crosstalk.enabled
            or config.defects
            or config.flat
            or config.interpolate
            or config.cosmic_rays.enabled
        )
    assert (bias.bias, bias.dark, dark.bias, dark.dark, flat.bias, flat.dark) == (
        False,
        False,
        True,
        False,
        True,
        True,
    )
    assert bias.saturation.enabled and bias.saturation.grow == 0 and not bias.saturation.widen_trails
    assert not dark.saturation.enabled and not flat.saturation.enabled
    assert (spec("bias").scaling, spec("dark").scaling, spec("flat").scaling) == (
        "unity",
        "darktime",
        "normalize",
    )
    assert isr_config_for("dark", {"overscan": {"fit_type": "MEAN"}}).overscan.fit_type == "MEAN"
    with pytest.raises(ConfigError, match=r"overscan\.fit_type"):
        isr_config_for("bias", {"overscan": {"fit_type": "SPLINE"}})
    with pytest.raises(ConfigError, match="unknown calibration type"):
        spec("fringe")


# --- defects ---------------------------------------------------------------------------------


def test_defects_from_synthetic_masters():
    rng = np.random.default_rng(3)
    shape = (300, 200)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    dark = (0.02 + 0.05 * np.exp(-y / 40.0) + rng.normal(0, 0.01, shape)).astype(np.float32)
    flat = (1.0 - 0.1 * ((x - 100) ** 2 + (y - 150) ** 2) / 150**2 + rng.normal(0, 0.01, shape)).astype(
        np.float32
    )
    flat[:, 100:] *= 1.03  # an amplifier step
    hot = [(20, 30), (150, 2), (299, 199), (200, 100)]
    cold = [(50, 60), (0, 0), (120, 101)]
    for r, c in hot:
        dark[r, c] += 1.0
    for r, c in cold:
        flat[r, c] *= 0.3
    dark[100:, 77] += 0.5  # a hot column from row 100
    mask = np.zeros(shape, np.int32)
    mask[10, 10] = 1  # BAD: no data in the master
    found, counts = find_defects((dark, mask), [(flat, None)])
    truth = np.zeros(shape, bool)
    for r, c in hot + cold + [(10, 10)]:
        truth[r, c] = True
    truth[100:, 77] = True
    assert found[truth].all()
    assert (found & ~truth).sum() <= 0.0001 * found.size + 1
    assert counts["no_data"] == 1 and counts["cold"] >= 3
    boxes = boxes_of(found)
    assert any(b.x0 == 77 and b.y0 == 100 and b.height == 200 and b.width == 1 for b in boxes)
    assert sum(b.width * b.height for b in boxes) == found.sum()


def test_column_rule_fills_short_gaps_only():
    column = np.zeros((200, 3), bool)
    column[0:40, 1] = True
    column[45:70, 1] = True  # gap of 5: filled
    column[120:150, 1] = True  # gap of 50: kept
    fill_columns(column)
    assert column[0:70, 1].all() and not column[70:120, 1].any() and column[120:150, 1].all()
