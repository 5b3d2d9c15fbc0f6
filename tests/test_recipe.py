"""Recipes: the seed's run as data, validation that names the key, and the learning-rate policies."""

from pathlib import Path

import pytest

from torchonspark.netdefs import load_model
from torchonspark.sparkjobs.engine.recipe import Recipe, describe_recipes, learning_rate, load_recipe

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
    rates = [learning_rate(recipe, i, 600000) for i in (0, 149999, 150000, 300000, 450000, 599999)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.0001, 0.0001])


def test_warmup_rises_linearly_then_cosine_falls_to_zero():
    recipe = Recipe(model=load_model("resnet_18"), batch_size=8, base_lr=1.0, max_iter=110, lr_policy="cosine", warmup_iters=10)
    assert learning_rate(recipe, 0, 110) == pytest.approx(0.1)
    assert learning_rate(recipe, 5, 110) == pytest.approx(0.55)
    assert learning_rate(recipe, 10, 110) == pytest.approx(1.0)
    assert learning_rate(recipe, 60, 110) == pytest.approx(0.5)
    assert learning_rate(recipe, 110, 110) == pytest.approx(0.0)


def test_a_packaged_recipe_is_found_by_name_from_any_folder_and_a_path_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: names must not depend on the working folder
    assert load_recipe("imagenet_resnet_50") == load_recipe(CONF / "imagenet_resnet_50.yaml")
    assert load_recipe(write(tmp_path).name).model.name == "resnet_18"  # a file name in this folder is a path
    listing = describe_recipes().splitlines()
    assert [line.split()[:2] for line in listing] == [["digits", "digits"], ["imagenet_resnet_50", "resnet_50"]]
    with pytest.raises(ValueError, match="unknown recipe 'resnet_50'; packaged recipes: digits, imagenet_resnet_50"):
        load_recipe("resnet_50")
