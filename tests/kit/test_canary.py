"""The canary vocabulary: rows, records, hardware labels and the hardware mix."""

from kit.canary import canary_digest, canary_record, canary_rows, describe_mix, hardware_label, hardware_mix


def test_canary_rows_spread_over_the_corpus_and_the_record_names_its_texts():
    assert canary_rows(5) == [0, 1, 2, 3, 4] and canary_rows(80) == [0, 10, 20, 30, 40, 50, 60, 70]
    record = canary_record(["a", "b"], [0, 3], 0.999)
    assert record["sha256"] == canary_digest(["a", "b"]) != canary_digest(["ab"])
    assert record == {"texts": ["a", "b"], "rows": [0, 3], "sha256": record["sha256"], "min_cosine": 0.999}


def test_hardware_is_labelled_from_shard_attributes_and_mixed_by_kind():
    a100 = {
        "node": "a100-2",
        "gpu_index": "1",
        "gpu_type": "a100",
        "device": "cpu",
        "compute_dtype": "float32",
    }
    v100 = {**a100, "node": "v100-1", "gpu_type": "v100", "gpu_index": "0"}
    moved = {**a100, "node": "a100-2,v100-1", "gpu_type": "a100,v100"}  # resumed on another node
    assert hardware_label(a100) == "node a100-2 GPU 1 (a100), device cpu, float32"
    assert hardware_label({"host": "laptop", "device": "mps", "compute_dtype": "float32"}) == (
        "node laptop, device mps, float32"
    )
    mix = hardware_mix([a100, a100, v100, moved])
    assert [(k["gpu_type"], k["shards"]) for k in mix] == [("a100", 2), ("a100,v100", 1), ("v100", 1)]
    assert describe_mix(mix[::2]) == (
        "2 shards on a100 (node a100-2), 1 on v100 (node v100-1); computed on cpu, float32"
    )
    laptop = {"host": "vm", "device": "cpu", "compute_dtype": "float32"}
    assert describe_mix(hardware_mix([laptop, {**laptop, "compute_dtype": "bfloat16"}])) == (
        "1 shards on cpu (node vm) in float32, 1 on cpu (node vm) in bfloat16"
    )
