"""Recipes: the seed's run and the large-batch one as data, validation that names the key, the
learning-rate schedules, and the weight decay each kind of parameter gets."""

from pathlib import Path

import pytest
from torch import nn

from torchonspark.netdefs import load_model
from torchonspark.netdefs.legos import ShortcutBlock, zero_init_residual
from torchonspark.sparkjobs.engine.optimizer import sgd
from torchonspark.sparkjobs.engine.recipe import Recipe, describe_recipes, load_recipe, schedule

CONF = Path(__file__).resolve().parents[1] / "conf"


def write(tmp_path, **changes):
    keys = {"model": "resnet_18", "batch_size": "8", "base_lr": "0.1", "max_iter": "100", **changes}
    path = tmp_path / "recipe.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in keys.items() if value is not None))
    return path


def test_the_seeds_resnet_50_run_is_in_conf():
    recipe = load_recipe(CONF / "imagenet_resnet_50.yaml")
    assert (recipe.batch_size, recipe.base_lr, recipe.momentum, recipe.weight_decay) == (16, 0.1, 0.9, 1e-4)
    assert (recipe.lr_policy, recipe.stepvalue, recipe.gamma, recipe.max_iter) == ("multistep", (150000, 300000, 450000), 0.1, 600000)
    assert (recipe.scale_range, recipe.mirror, recipe.crop_size) == ((256, 480), True, 224)
    assert (recipe.model.name, recipe.model.input_size) == ("resnet_50", 224)


def test_the_digits_recipe_builds_a_net_for_32_pixel_images():
    netdef = load_recipe(CONF / "digits.yaml").for_classes(10).model
    assert (netdef.name, netdef.input_size, netdef.num_classes) == ("digits", 32, 10)
    assert load_recipe(CONF / "digits.yaml").mirror is False


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"momentun": "0.9"}, "unknown key 'momentun'"),
        ({"base_lr": "fast"}, "base_lr must be int or float"),
        ({"display": "0"}, "display must be at least 1"),
        ({"lr_policy": "exponential"}, "lr_policy must be one of multistep, cosine, fixed"),
        ({"stepvalue": "[50, 20]"}, "stepvalue must be increasing"),
        ({"epochs": "3"}, "exactly one of max_iter and epochs"),
        ({"mirror": "1"}, "mirror must be bool"),
        ({"scale_range": "[100, 300]"}, "scale_range must satisfy"),
        ({"model": "resnet_51"}, "unknown model 'resnet_51'"),
        ({"base_lr": None}, "missing key 'base_lr'"),
        ({"warmup_iters": "5", "warmup_epochs": "1"}, "at most one of warmup_iters and warmup_epochs"),
        ({"stepvalue": "[50]", "stepvalue_epochs": "[1]"}, "at most one of stepvalue and stepvalue_epochs"),
        ({"stepvalue_epochs": "[2, 1.5]"}, "stepvalue_epochs must be increasing"),
        ({"gradient_compression": "int8"}, "gradient_compression must be one of none, bf16, fp16"),
        ({"bucket_cap_mb": "0"}, "bucket_cap_mb must be positive"),
        ({"static_graph": "yes please"}, "static_graph must be bool"),
        ({"norm_weight_decay": "-1"}, "norm_weight_decay must not be negative"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_file_and_key(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message) as caught:
        load_recipe(write(tmp_path, **changes))
    assert "recipe.yaml" in str(caught.value)


def test_flags_override_file_values_and_switch_between_iterations_and_epochs(tmp_path):
    recipe = load_recipe(write(tmp_path))
    assert recipe.replace(epochs=3).max_iter is None and recipe.replace(epochs=3).epochs == 3
    assert recipe.replace(base_lr=None, batch_size=4).batch_size == 4
    with pytest.raises(ValueError, match="batch_size"):
        recipe.replace(batch_size=0)


def test_multistep_divides_the_rate_at_each_step_value():
    recipe = Recipe(model=load_model("resnet_50"), batch_size=16, base_lr=0.1, max_iter=600000, stepvalue=(150000, 300000, 450000))
    rates = schedule(recipe, world_size=16, per_epoch=5005)
    assert [rates.rate(i) for i in (0, 149999, 150000, 300000, 450000, 599999)] == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.0001, 0.0001])


def test_warmup_rises_linearly_then_cosine_falls_to_zero():
    recipe = Recipe(model=load_model("resnet_18"), batch_size=8, base_lr=1.0, max_iter=110, lr_policy="cosine", warmup_iters=10)
    rates = schedule(recipe, world_size=2, per_epoch=30)
    assert [rates.rate(i) for i in (0, 5, 10, 60, 110)] == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.0])


def test_the_large_batch_recipe_scales_the_rate_with_the_global_batch_and_counts_in_epochs():
    recipe = load_recipe("imagenet_resnet_50_large_batch")
    assert (recipe.batch_size, recipe.base_lr, recipe.base_lr_batch, recipe.epochs) == (256, 0.1, 256, 90)
    per_epoch = 1281167 // (16 * 256)  # ImageNet's training images over 16 GPUs
    rates = schedule(recipe, world_size=16, per_epoch=per_epoch)
    assert rates.base_lr == pytest.approx(1.6) and rates.warmup_start_lr == pytest.approx(0.1)  # Goyal: 0.1 x 4096/256
    assert rates.warmup_iters == 5 * per_epoch and rates.stepvalue == (30 * per_epoch, 60 * per_epoch, 80 * per_epoch)
    assert rates.max_iter == 90 * per_epoch
    assert rates.rate(0) == pytest.approx(0.1) and rates.rate(5 * per_epoch) == pytest.approx(1.6)
    assert rates.rate(80 * per_epoch) == pytest.approx(0.0016)
    one_gpu = schedule(recipe, world_size=1, per_epoch=per_epoch * 16)  # the reference batch: no change, no climb
    assert one_gpu.base_lr == pytest.approx(0.1) and one_gpu.warmup_start_lr == pytest.approx(0.1)
    assert recipe.ddp_options().static_graph and recipe.ddp_options().gradient_as_bucket_view


def test_flags_choose_the_compression_and_a_recipe_without_the_new_keys_keeps_todays_ddp(tmp_path):
    plain = load_recipe(write(tmp_path))
    assert plain.ddp_options().compression == "none" and plain.ddp_options().bucket_cap_mb is None  # DDP's own buckets
    assert not plain.ddp_options().static_graph and not plain.ddp_options().gradient_as_bucket_view
    assert plain.replace(gradient_compression="bf16").ddp_options().compression == "bf16"


def test_batchnorm_and_biases_can_be_left_out_of_weight_decay():
    net = load_model("resnet_18").build()
    recipe = Recipe(model=load_model("resnet_18"), batch_size=8, base_lr=0.1, max_iter=10)
    assert [group["weight_decay"] for group in sgd(net, recipe).param_groups] == [1e-4]  # as before the keys existed
    groups = sgd(net, recipe.replace(norm_weight_decay=0, bias_weight_decay=0)).param_groups
    decays = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    norms = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    fc = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    assert all(decays[id(p)] == 0 for p in norms + [fc.bias]) and all(decays[id(p)] == 1e-4 for p in convs + [fc.weight])
    assert len(decays) == len(list(net.parameters()))  # every parameter in exactly one group


def test_zero_init_residual_starts_each_block_as_the_identity_where_a_zero_can_still_learn():
    net = load_model("resnet_50").build()
    assert zero_init_residual(net) == 16  # 3 + 4 + 6 + 3 bottleneck blocks
    blocks = [m for m in net.modules() if isinstance(m, ShortcutBlock)]
    assert all(not block.main[-1].bn.weight.detach().any() for block in blocks)
    assert zero_init_residual(load_model("resnet_34_inception_trick").build()) == 0  # its branches end in a ReLU


def test_a_packaged_recipe_is_found_by_name_from_any_folder_and_a_path_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: names must not depend on the working folder
    assert load_recipe("imagenet_resnet_50") == load_recipe(CONF / "imagenet_resnet_50.yaml")
    assert load_recipe(write(tmp_path).name).model.name == "resnet_18"  # a file name in this folder is a path
    listing = describe_recipes().splitlines()
    assert [line.split()[:2] for line in listing] == [["digits", "digits"], ["imagenet_resnet_50", "resnet_50"],
                                                      ["imagenet_resnet_50_large_batch", "resnet_50"]]
    with pytest.raises(ValueError, match="unknown recipe 'resnet_50'; packaged recipes: digits, imagenet_resnet_50"):
        load_recipe("resnet_50")
