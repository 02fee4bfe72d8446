"""The grey image set: every grey photograph of scikit-image, split by picture, large crops."""

import pytest

from jfbbench import data, problems


def test_grey_test_pictures_are_never_trained_on_nor_seen_by_the_denoiser_pretraining():
    grey = data.GREY_SPLIT
    assert not set(grey["train"]) & set(grey["test"])
    assert not set(grey["test"]) & set(data.SPLIT["train"])  # the suite's DRUNet trains on these
    for name in grey["train"] + grey["test"]:
        img = data.load_image(name, "grey")
        assert img.ndim == 2 and min(img.shape) >= 128 and max(min(img.shape), 0) <= 307
        assert 0.0 <= img.min() and img.max() <= 1.0


def test_grey_crops_of_128_pixels_and_a_problem_built_on_them():
    x = data.patches("test", 128, per_image=2, seed=1, images="grey")
    assert tuple(x.shape) == (6, 1, 128, 128)
    assert float(x.std(dim=(1, 2, 3)).min()) >= 0.05  # no flat crop
    p = problems.make("weighted_tv", images="grey", patch=128, seed=0)
    assert p.n_images("train") == len(data.GREY_SPLIT["train"]) and p.config["images"] == "grey"
    with pytest.raises(ValueError, match=r"patch size must be an integer in \[8, 128\] for images='default'"):
        data.patches("train", 129)
    with pytest.raises(ValueError, match="images must be one of 'default', 'grey', 'grey256'; got 'colour'"):
        data.patches("train", 32, images="colour")


def test_grey256_gives_crops_of_256_pixels_in_both_splits_and_grey_does_not():
    split = data.GREY256_SPLIT
    assert set(split["train"]) < set(data.GREY_SPLIT["train"]) and split["test"] == data.GREY_SPLIT["test"]
    assert not set(split["test"]) & set(data.SPLIT["train"])
    for name in split["train"] + split["test"]:
        assert min(data.load_image(name, "grey256").shape) == 256
    for part in ("train", "test"):
        x = data.patches(part, 256, seed=2, images="grey256")
        assert tuple(x.shape) == (len(split[part]), 1, 256, 256)
    with pytest.raises(ValueError, match=r"patch size must be an integer in \[8, 172\] for images='grey'"):
        data.patches("train", 256, images="grey")
