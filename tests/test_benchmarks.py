"""The benchmark scripts run at a tiny size on CPU: gpu.sh (throughput rows, pretraining end to end, then every
training script once through device_smoke) prints one JSON line per row; gpu_quality.sh runs the quality benchmark
on a resized copy of the data and collects its results; predict_speed times the prediction loop with and without
workers; bootstrap_speed times the confidence intervals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
from shared_layout import write_shared_layout  # noqa: E402

from benchmarks import bundle_data  # noqa: E402


def test_gpu_script_smoke_run(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path),
           "OFFLINE": str(tmp_path / "no_bundle"),  # this environment's packages, not a bundle made for a GPU host
           "SMOKE_DIR": str(tmp_path / "device_smoke"), "ROWS": "small,e2e,device-smoke"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "throughput.jsonl").read_text().splitlines()]
    names = {row.get("name") for row in rows}
    assert {"cxrgm_gmml_corruption", "cxrgm_gmml_pretrain", "cxrgm_cls_finetune", "hf_simmim_pretrain",
            "hf_vitmae_pretrain", "hf_vit_cls_finetune"} <= names
    end_to_end = {"cxrgm_loader_only", "cxrgm_pretrain_step_only", "cxrgm_pretrain_end_to_end"}
    assert end_to_end <= names
    steps = [row for row in rows if "img_per_s" in row]
    assert all(row["img_per_s"] > 0 for row in steps)
    assert all(row["gflop_per_img"] > 0 and row["saved_mib_per_img"] > 0 for row in steps
               if row["name"] not in end_to_end)
    ratios = [row["ratios"] for row in rows if "ratios" in row]
    assert ratios[0]["gmml_over_hf_simmim"] > 0 and ratios[0]["gmml_saved_activations_over_hf_simmim"] > 0
    assert ratios[-1]["end_to_end_over_step_only"] > 0
    profiles = (tmp_path / "profiles.txt").read_text().split("\n== ")  # one table per model of the first row
    assert profiles[0].startswith("== cxrgm_gmml_pretrain (size tiny") and "aten::mm" in profiles[0]
    assert any(table.startswith("hf_simmim_pretrain (size tiny") for table in profiles)
    loop = next(table for table in profiles if table.startswith("cxrgm_pretrain loop step (batch 2)"))
    assert "aten::mm" in loop and "Optimizer.step" in loop  # the model's step inside the loop's
    assert len({path.name for path in tmp_path.iterdir() if path.is_file()}) <= 8  # what a device run brings back
    stages = [json.loads(line) for line in (tmp_path / "device_smoke.jsonl").read_text().splitlines()]
    assert len(stages) == 7 and all(stage["exit_status"] == 0 for stage in stages), stages
    timings = [row for row in rows if "seconds" in row]  # each row's wall time, after its lines
    assert [timing["row"] for timing in timings] == ["tiny", "end to end", "device smoke"]
    assert all(timing["seconds"] >= 0 for timing in timings) and timings[-1] == rows[-1]
    assert rows.index(timings[0]) > max(rows.index(row) for row in rows if row.get("name") == "cxrgm_cls_finetune")


def lines_of_gpu_script(out, rows: str, **env) -> list[dict]:
    """The JSON lines `ROWS=rows SMOKE=1 gpu.sh` writes to out/throughput.jsonl."""
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(out), "ROWS": rows,
           "OFFLINE": str(out / "no_bundle"), **env}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in (out / "throughput.jsonl").read_text().splitlines()]


def rows_of_gpu_script(out, rows: str, **env) -> set[str]:
    """The names of the rows `ROWS=rows SMOKE=1 gpu.sh` writes to out/throughput.jsonl."""
    return {line.get("name") for line in lines_of_gpu_script(out, rows, **env)} - {None}


def test_gpu_script_attention_row_forces_each_backend_and_runs_alone(tmp_path):
    """Only the rows ROWS names run (a GPU run is split over calls, each with a time limit, or repeats one row)."""
    names = rows_of_gpu_script(tmp_path, "small-attention")
    assert names == {f"{model}_sdpa_{backend}" for model in ("cxrgm_gmml_pretrain", "cxrgm_cls_finetune")
                     for backend in ("flash", "math")}
    assert not (tmp_path / "device_smoke.jsonl").exists()
    assert not (tmp_path / "profiles.txt").exists()  # no ViT-S row ran


def test_gpu_script_refuses_a_row_it_does_not_know_and_keeps_earlier_runs_lines(tmp_path):
    """A misspelt ROWS name ran nothing and ended with status 0 (a lost call on a GPU lent for minutes); a second run
    into the same OUT emptied the first one's lines."""
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path), "ROWS": "smal,small-attention",
           "OFFLINE": str(tmp_path / "no_bundle")}
    refused = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "ROWS: no row named 'smal'; the rows: gpu-tests small e2e" in refused.stderr
    assert not (tmp_path / "throughput.jsonl").exists()
    first = rows_of_gpu_script(tmp_path, "small-attention")
    lines = lines_of_gpu_script(tmp_path, "small-attention")  # the same OUT again
    assert sum("environment" in line for line in lines) == 2
    assert len([line for line in lines if line.get("name") in first]) == 2 * len(first)


def test_gpu_script_graphs_host_and_autotune_rows(tmp_path):
    """small-graphs: our GMML step with the corruption compiled (as training runs it with CUDA graphs; it needs compiling, so
    on CPU fine-tuning alone) and fine-tuning, profiled; small-host: our fine-tuning beside timm with our stochastic
    depth off, profiled; small-autotune: GMML, fine-tuning and timm with max-autotune, profiled; small-experiments: the
    GMML step as the recipes train it, without each of their two faster settings, then without both (on CPU, all
    eager); base-experiments: the second size's GMML step as the recipes train it and without both, each profiled;
    small-fusion: the GMML step profiled, as it is only on CPU (its Inductor settings need compiling)."""
    lines = lines_of_gpu_script(
        tmp_path, "small-graphs,small-host,small-autotune,small-experiments,base-experiments,small-fusion")
    runs = [line["drop_path"] for line in lines if "drop_path" in line]  # each throughput.py run's header
    assert runs == [0.1, 0.0, 0.1] + [0.1] * 4 + [0.1] * 2 + [0.1]
    names = [line["name"] for line in lines if "img_per_s" in line or "masks_per_s" in line]
    assert names[:1] == ["cxrgm_cls_finetune"]  # no sampler rows, no eager-mask GMML step
    assert names[1:2] == ["cxrgm_cls_finetune"] and set(names[2:4]) == {"cxrgm_gmml_pretrain", "cxrgm_cls_finetune"}
    assert names[4:] == ["cxrgm_gmml_pretrain" + suffix for suffix in (
        "", "_float32_residual", "_gelu", "_float32_residual_gelu", "", "_float32_residual_gelu", "")]
    tables = (tmp_path / "profiles.txt").read_text().split("\n== ")
    assert sum(table.lstrip("= ").startswith("cxrgm_cls_finetune (size tiny") for table in tables) == 3
    gmml_tables = sum(table.lstrip("= ").startswith("cxrgm_gmml_pretrain") for table in tables)
    assert gmml_tables == 1 + 2 + 1  # autotune's, base's, fusion's


def test_gpu_script_compiled_rows_time_the_anchors_and_default_mode_times_ours(tmp_path):
    """small-compiled / base-compiled: the compiled anchors (timm, absent here) and the compiled mask samplers, not
    our models; base: ViT-B eager, our GMML step beside the SimMIM anchor (speed and peak memory) alone; default-mode:
    ours in torch.compile's default mode, ViT-S then ViT-B (on CPU eager: no compiled-corruption GMML row, which needs
    compiling)."""
    lines = lines_of_gpu_script(tmp_path, "small-compiled,base,base-compiled,default-mode")
    steps = [line["name"] for line in lines if "img_per_s" in line]
    assert steps == ["cxrgm_gmml_pretrain", "hf_simmim_pretrain"] + ["cxrgm_gmml_pretrain", "cxrgm_cls_finetune"] * 2
    masks = {line["name"] for line in lines if "masks_per_s" in line}
    assert {"cxrgm_gmml_corruption", "cxrgm_mask_sampler_first_cover"} <= masks


def test_gpu_script_small_batch_row_times_the_fine_tuning_step_three_ways(tmp_path):
    """The model's step beside the peers, the training loop's step alone, and end to end through the loader, the
    latter on DATA's labelled Kermany images (a GPU host given offline/data need not also have the sample cache)."""
    data = write_shared_layout(tmp_path / "data", patients=4)
    out = tmp_path / "out"
    lines = lines_of_gpu_script(out, "small-batch", DATA=str(data))
    names = {line.get("name") for line in lines} - {None}
    assert {"cxrgm_cls_finetune", "hf_vit_cls_finetune", "cxrgm_loader_only", "cxrgm_finetune_step_only",
            "cxrgm_finetune_end_to_end"} <= names
    assert not any("gmml" in name or "pretrain" in name for name in names)
    header = next(line for line in lines if line.get("task") == "classification")
    assert header["data"].endswith("/kermany_prepared") and not Path(header["data"]).exists()  # removed after


def test_gpu_quality_script_smoke_run(tmp_path):
    copy = tmp_path / "data_32"
    bundle_data.bundle(write_shared_layout(tmp_path / "data"), copy, size=32)  # the smoke preset's image size
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(out), "DATA": str(copy),
           "QUALITY_OUT": str(tmp_path / "quality"), "OFFLINE": str(tmp_path / "no_bundle"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf_cache")}
    setting = '{"hidden_act": "gelu"}'  # the script's arguments go to quality.py (the recipes': gelu_pytorch_tanh)
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_quality.sh"), "--model_config", setting], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    commands = [line for line in (out / "commands.sh").read_text().splitlines() if " -m train." in line]
    assert commands and all('"hidden_act": "gelu"' in line for line in commands
                            if "train.evaluate" not in line and "train.probe" not in line)
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.md", "commands.sh", "loss_curve.png", "quality_log.txt"} <= names
    assert any(name.startswith("step_") and name.endswith(".png") for name in names)  # the last grid
    results = json.loads((out / "results.json").read_text())
    assert len(results["classification"]) == 6 and f"--data_dir {copy}" in (out / "commands.sh").read_text()


def test_predict_speed_smoke_run(tmp_path):
    from benchmarks import predict_speed
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2)
    GroupMaskedViTForImageClassification(config).save_pretrained(tmp_path)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path)
    rows = predict_speed.main(["--model", str(tmp_path), "--files", "3", "--batch-size", "2", "--workers", "1"])
    assert [row["num_workers"] for row in rows] == [0, 1] and all(row["img_per_s"] > 0 for row in rows)


def test_bootstrap_speed_smoke_run():
    from benchmarks import bootstrap_speed

    row = bootstrap_speed.main(["--images", "200", "--labels", "3", "--resamples", "5"])
    assert row["direct_s"] > 0 and row["cxrgm_s"] > 0


def test_step_count_gives_flops_and_saved_activation_bytes_per_image():
    from benchmarks.throughput import count_step

    x = torch.randn(4, 256, requires_grad=True)
    weight = torch.randn(256, 8, requires_grad=True)

    def step(optimize: bool):
        ((x * x) @ weight).sum().backward()  # mul saves x twice (one storage), the matmul its two inputs

    flops, saved = count_step(step, batch_size=4)
    assert flops == 3 * 2 * 4 * 256 * 8 / 4  # matmul forward + its two backward products, per image
    assert saved == (4 * 256 * 4 + 4 * 256 * 4 + 256 * 8 * 4) / 4  # x, x * x, weight (float32 bytes)


def test_device_busy_time_counts_each_kernel_once():
    """The profiler credits a kernel's time to the host operator that launched it as well: the sum of every event's
    self device time counted each kernel twice (a busy time above the step's wall time)."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from benchmarks.throughput import device_busy_us

    events = [SimpleNamespace(device_type=DeviceType.CPU, self_device_time_total=150.0),  # aten::mm, its kernel's
              SimpleNamespace(device_type=DeviceType.CUDA, self_device_time_total=100.0, is_user_annotation=False),
              SimpleNamespace(device_type=DeviceType.CUDA, self_device_time_total=50.0),
              SimpleNamespace(device_type=DeviceType.CUDA, self_device_time_total=150.0, is_user_annotation=True)]
    assert device_busy_us(events) == 150.0


def test_a_profile_of_several_loop_steps_per_call_counts_them_as_steps(tmp_path):
    """The training loop's profile ran one loop step per call, each ending on a read of its loss (a sync training
    makes every log_every_steps steps only): three steps in one call, counted as three."""
    from benchmarks.throughput import profile_steps

    calls = []
    profile_steps(lambda: calls.append(torch.ones(3).sum()), "cpu", tmp_path / "p.txt", "loop", steps=1,
                  steps_per_call=3)
    assert len(calls) == 1 and (tmp_path / "p.txt").read_text().startswith("== loop: 3 steps")


def test_step_count_includes_attention_on_cpu():
    """torch's counter knows only the GPU attention kernels: the CPU one must count the same products."""
    from benchmarks.throughput import count_step

    batch, heads, tokens, dim = 2, 3, 17, 8
    query = torch.randn(batch, heads, tokens, dim, requires_grad=True)

    def step(optimize: bool):
        torch.nn.functional.scaled_dot_product_attention(query, query, query).sum().backward()

    flops, _ = count_step(step, batch_size=batch)
    product = 2 * heads * tokens * tokens * dim  # one (tokens x dim) @ (dim x tokens) product per head and image
    # forward: scores and output; backward: the scores again and four gradient products (as torch counts on a GPU)
    assert flops == 2 * product + 5 * product


def test_compiled_run_gives_the_corruption_share_of_its_own_step(capsys):
    from benchmarks import throughput

    rows = throughput.main(["--size", "tiny", "--image-size", "32", "--batch-size", "2", "--steps", "1", "--warmup",
                            "1", "--compile", "--only", "cxrgm_gmml"])  # the corruption rows, both compiled GMML steps
    rates = {row["name"]: row.get("img_per_s", row.get("masks_per_s")) for row in rows}
    assert rates["cxrgm_mask_sampler_first_cover_compiled"] > 0 and rates["cxrgm_mask_sampler_matmul_compiled"] > 0
    ratios = json.loads(capsys.readouterr().out.splitlines()[-1])["ratios"]
    share = rates["cxrgm_gmml_pretrain_compiled"] / rates["cxrgm_gmml_corruption"]
    assert ratios["corruption_share_of_step_compiled"] == round(share, 3)
    fused = rates["cxrgm_gmml_compiled_corruption_compiled"] / rates["cxrgm_gmml_pretrain_compiled"]
    assert ratios["gmml_compiled_corruption_over_gmml_compiled"] == round(fused, 3)
    fused_share = rates["cxrgm_gmml_compiled_corruption_compiled"] / rates["cxrgm_gmml_corruption_compiled"]
    assert ratios["compiled_corruption_share_of_step_compiled"] == round(fused_share, 3)



def test_interleaved_rounds_give_each_row_the_median_of_its_rounds(capsys):
    """--rounds times the models in turn (order reversed every other round) and reports each one's median round, and
    the median of the rounds' ratios."""
    import statistics

    from benchmarks import throughput

    rows = throughput.main(["--size", "tiny", "--image-size", "32", "--batch-size", "2", "--steps", "1", "--warmup",
                            "1", "--rounds", "3", "--only", "cxrgm_gmml_pretrain,hf_simmim"])
    assert [row["name"] for row in rows] == ["cxrgm_gmml_pretrain", "hf_simmim_pretrain"]
    for row in rows:
        assert len(row["img_per_s_rounds"]) == 3 and row["gflop_per_img"] > 0
        # the row rounded to 0.1, each round to 0.01
        assert abs(row["img_per_s"] - statistics.median(row["img_per_s_rounds"])) <= 0.051
    ratios = json.loads(capsys.readouterr().out.splitlines()[-1])["ratios"]
    per_round = [ours / peer for ours, peer in zip(rows[0]["img_per_s_rounds"], rows[1]["img_per_s_rounds"])]
    assert ratios["gmml_over_hf_simmim"] == round(statistics.median(per_round), 3)  # each round's pair, same load


def test_mask_sampler_benchmark_times_every_union_and_the_corruption_beside_a_baseline_file():
    from benchmarks import mask_samplers

    baseline = Path(mask_samplers.masking.__file__)  # any masking.py: here this version's own
    rows = mask_samplers.main(["--batch-size", "2", "--image-size", "32", "--rounds", "2", "--threads", "1",
                               "--baseline", str(baseline), "--corruption"])
    ways = [*mask_samplers.UNIONS, "corruption"]
    assert [row["name"] for row in rows] == [*ways, *(f"baseline_{way}" for way in ways)]
    assert all(row["masks_per_s"] > 0 and row["threads"] == 1 for row in rows)


def test_first_cover_count_ways_equal_the_histogram_and_the_gpu_row_times_each(tmp_path):
    """Every scatter-free way counts as masking.py's histogram does, on real draws and the edge cases; a way that
    counts otherwise is caught; gpu.sh's first-cover-counts row prints one line per way."""
    from benchmarks import first_cover_counts

    first, needed, budget = first_cover_counts.first_cover_inputs(6, 48, torch.Generator().manual_seed(1))
    first_cover_counts.check_equal(first, needed, budget)
    one_short = lambda first, needed, k: (first_cover_counts.histogram(first, needed, k) - 1).clamp(min=0)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(first_cover_counts.WAYS, "one_short", one_short)
        with pytest.raises(AssertionError, match="one_short counts differ"):
            first_cover_counts.check_equal(first, needed, budget)
    lines = lines_of_gpu_script(tmp_path, "first-cover-counts")
    assert [line["name"] for line in lines if "masks_per_s" in line] == list(first_cover_counts.WAYS)


def test_first_cover_count_benchmark_compiles_each_way_into_the_corruption():
    """corruption_<way> rows run the compiled corruption with that way: one that needs no rectangles masks nothing,
    and the next way gets its own graph again (the histogram's masks)."""
    from benchmarks import first_cover_counts
    from modeling_cxrgm import GroupMaskedViTConfig

    config, views = GroupMaskedViTConfig(image_size=32), torch.randn(4, 1, 32, 32)
    none_needed = lambda first, needed, k: torch.zeros_like(needed)  # noqa: E731
    masks = [first_cover_counts.corrupt_with(way, views, config, torch.Generator().manual_seed(0))[1]
             for way in (first_cover_counts.histogram, none_needed, first_cover_counts.bisection)]
    assert masks[0].any() and not masks[1].any() and torch.equal(masks[0], masks[2])


def test_drop_path_option_sets_our_rows_stochastic_depth():
    """--drop-path 0 times our steps without stochastic depth, like the peers; by default the recipes' 0.1."""
    from benchmarks.throughput import our_config, parse_args

    assert our_config(parse_args(["--drop-path", "0"])).drop_path_rate == 0
    assert our_config(parse_args([])).drop_path_rate == 0.1


def test_inductor_option_sets_the_compiler_config_and_names_the_rows():
    """--inductor NAME=VALUE reaches torch._inductor.config (dotted names into its sub-configs), each row says which
    settings it ran with, and a misspelt name stops the run instead of being ignored. A forced attention backend turns
    the compiler's on-disk caches off (served from them, a run executed the graph compiled for another backend)."""
    import torch._inductor.config as inductor_config

    from benchmarks.throughput import apply_inductor_settings, main, parse_args, row_suffix

    args = parse_args(["--compile", "--compile-mode", "reduce-overhead", "--inductor", "coordinate_descent_tuning=True",
                       "--inductor", "triton.unique_kernel_names=True"])
    assert row_suffix(args) == "_compiled_reduce-overhead_coordinate_descent_tuning_triton.unique_kernel_names"
    settings = {"coordinate_descent_tuning": False, "triton.unique_kernel_names": False, "force_disable_caches": False}
    with inductor_config.patch(settings):
        apply_inductor_settings(args)
        assert inductor_config.coordinate_descent_tuning is True and inductor_config.triton.unique_kernel_names is True
        assert inductor_config.force_disable_caches is False  # the on-disk caches stay on
    with inductor_config.patch(force_disable_caches=False):  # their keys leave out a forced attention backend
        apply_inductor_settings(parse_args(["--compile", "--sdpa-backend", "flash"]))
        assert inductor_config.force_disable_caches is True
    with pytest.raises(SystemExit, match="has no coordinate_descent_tunning"):
        apply_inductor_settings(parse_args(["--compile", "--inductor", "coordinate_descent_tunning=True"]))
    with pytest.raises(SystemExit, match="needs --compile"):
        main(["--inductor", "coordinate_descent_tuning=True"])


def test_our_rows_have_the_recipes_model_settings_and_experiment_options_override_them():
    """Without options our models have GMML pretraining's recipe settings (the two faster ones included) and the
    rows no suffix; --[no-]low-precision-residual and --hidden-act override them (the same on every row of ours) and
    end the rows' names; the residual stream in bfloat16 needs bf16 autocast, so --fp32 with it is refused."""
    import pytest

    from benchmarks.throughput import main, our_config, parse_args, row_suffix
    from train.config import recipe_model_config

    recipe = recipe_model_config("gmml_pretrain")
    default_args = parse_args(["--image-size", "32"])
    default = our_config(default_args)
    assert row_suffix(default_args) == ""
    assert all(getattr(default, name) == value for name, value in recipe.items())
    assert (default.low_precision_residual, default.hidden_act) == (True, "gelu_pytorch_tanh")
    args = parse_args(["--no-low-precision-residual", "--hidden-act", "gelu", "--image-size", "32"])
    assert row_suffix(args) == "_float32_residual_gelu"
    config = our_config(args)
    assert (config.low_precision_residual, config.hidden_act, config.mask_fill) == (False, "gelu", recipe["mask_fill"])
    assert row_suffix(parse_args(["--low-precision-residual"])) == "_low_precision_residual"
    with pytest.raises(SystemExit, match="needs bf16 autocast"):
        main(["--low-precision-residual", "--fp32"])


def test_loader_benchmarks_stop_on_a_batch_that_could_not_be_read():
    """They counted the error item of an unreadable batch as a batch delivered."""
    import pytest

    from benchmarks import epoch_latency, pretrain_e2e
    from hf_datasets.errors import ImageReadError

    error = ImageReadError("row 1 (PNEUMONIA/cut.jpeg)", "image cannot be decoded")
    with pytest.raises(ImageReadError, match="PNEUMONIA/cut.jpeg"):
        list(pretrain_e2e.TimedLoader([{"error": error}], warmup=0, device=torch.device("cpu")))

    class Unreadable(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitems__(self, indices):
            return [{"error": error}]

    with pytest.raises(ImageReadError, match="PNEUMONIA/cut.jpeg"):
        epoch_latency.epoch_ms(Unreadable(), batch_size=2, workers=0, epochs=2)
