"""Training options: one spec each, and every bad value refused at submission naming the option and its range."""
import json
import math
import re
from dataclasses import asdict

import pytest

from ml.datasets import import_dataset
from ml.errors import RegistryError, TrainingError
from ml.learning.options import OPTION_SPECS, PIPELINES, TrainingOptions
from tests.helpers import SYNTHETIC_FACES, bearer_headers, form_token, login, make_user, synthetic_entries, write_zip
from web.training.forms import BASIC_OPTIONS

# (option, a bad value, the start of the message that refuses it)
BAD_VALUES = [
    ("epochs", json.loads("1e400"), "epochs must be a whole number from 1 to 1000 (got Infinity)"),
    ("epochs", math.inf, "epochs must be a whole number from 1 to 1000"),
    ("epochs", -math.inf, "epochs must be a whole number from 1 to 1000"),
    ("epochs", math.nan, "epochs must be a whole number from 1 to 1000 (got NaN)"),
    ("epochs", "1e400", 'epochs must be a whole number from 1 to 1000 (got "1e400")'),
    ("epochs", "abc", 'epochs must be a whole number from 1 to 1000 (got "abc")'),
    ("epochs", "", "epochs must be a whole number from 1 to 1000"),
    ("epochs", 3.5, "epochs must be a whole number from 1 to 1000 (got 3.5)"),
    ("epochs", 10 ** 400, "epochs must be a whole number from 1 to 1000"),
    ("epochs", None, "epochs must be a whole number from 1 to 1000 (got null)"),
    ("epochs", [3], "epochs must be a whole number from 1 to 1000"),
    ("epochs", 0, "epochs must be a whole number from 1 to 1000 (got 0)"),
    ("folds", json.loads("-1e400"), "folds must be a whole number from 2 to 20 (got -Infinity)"),
    ("folds", True, "folds must be a whole number from 2 to 20 (got true)"),
    ("folds", 1, "folds must be a whole number from 2 to 20"),
    ("fine_tune_epochs", -1, "fine_tune_epochs must be a whole number from 0 to 1000"),
    ("batch_size", 513, "batch_size must be a whole number from 1 to 512"),
    ("image_size", 8, "image_size must be a whole number from 32 to 512"),
    ("patience", 0, "patience must be a whole number from 1 to 1000"),
    ("seed", -1, "seed must be a whole number from 0 to 4294967295"),
    ("seed", 2 ** 32, "seed must be a whole number from 0 to 4294967295"),
    ("seed", False, "seed must be a whole number from 0 to 4294967295"),
    ("learning_rate", math.nan, "learning_rate must be a number above 0 and at most 1 (got NaN)"),
    ("learning_rate", "NaN", "learning_rate must be a number above 0 and at most 1"),
    ("learning_rate", 0, "learning_rate must be a number above 0 and at most 1"),
    ("fine_tune_learning_rate", 1.5, "fine_tune_learning_rate must be a number above 0 and at most 1"),
    ("regularization", math.nan, "regularization must be auto or a number above 0 and at most 1000000"),
    ("regularization", 0, "regularization must be auto or a number above 0 and at most 1000000"),
    ("regularization", "Infinity", "regularization must be auto or a number above 0 and at most 1000000"),
    ("regularization", "automatic", "regularization must be auto or a number above 0 and at most 1000000"),
    ("regularization", True, "regularization must be auto or a number above 0 and at most 1000000"),
    ("min_coverage", 0.4, "min_coverage must be a number from 0.5 to 1"),
    ("dropout", 1.0, "dropout must be a number at least 0 and below 1 (got 1.0)"),
    ("dropout", -0.1, "dropout must be a number at least 0 and below 1"),
    ("test_fraction", 0.5, "test_fraction must be a number above 0 and below 0.5"),
    ("validation_fraction", 0, "validation_fraction must be a number above 0 and below 0.5"),
    ("head", "forest", 'head must be one of linear, softmax, svm (got "forest")'),
    ("head", None, "head must be one of linear, softmax, svm"),
    ("mixed_precision", "yes", "mixed_precision must be one of auto, on, off"),
    ("backbone", "resnet", 'Unknown backbone "resnet"'),
    ("backbone", "vggface+hog", "Unknown backbone"),
    ("backbone", 5, "backbone must be text (got 5)"),
    ("weights", "", "weights must be pretrained, none or the path of a weights file of at most 1000 characters"),
    ("weights", "w" * 1001, "weights must be pretrained, none or the path of a weights file"),
    ("weights", 1, "weights must be text"),
]


@pytest.mark.parametrize("name, value, message", BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_option_and_its_range(name, value, message):
    with pytest.raises(TrainingError, match=f"^{re.escape(message)}"):
        TrainingOptions.from_dict({name: value})


@pytest.mark.parametrize("name, value", [("epochs", 0), ("folds", True), ("dropout", 1.0), ("seed", 2 ** 32),
                                         ("learning_rate", math.nan), ("head", "forest"), ("epochs", "3")])
def test_the_constructor_refuses_what_from_dict_refuses(name, value):
    with pytest.raises(TrainingError, match=f"^{name} must be"):
        TrainingOptions(**{name: value})


@pytest.mark.parametrize("options, message", [
    ({"learning_rate_typo": 1}, "Unknown training option(s): learning_rate_typo; the options are backbone, head"),
    ({"fine_tune_epochs": 3}, "Fine-tuning trains the softmax head with the network: use head softmax."),
])
def test_unknown_names_and_bad_combinations_are_refused(options, message):
    with pytest.raises(TrainingError, match=re.escape(message)):
        TrainingOptions.from_dict(options)


def test_numbers_written_as_text_or_whole_floats_are_converted():
    options = TrainingOptions.from_dict({"weights": "none", "image_size": "64", "epochs": 3.0, "folds": "4",
                                         "seed": 2 ** 32 - 1, "learning_rate": 1, "dropout": "0",
                                         "backbone": "hog+lbp"})
    assert (options.image_size, options.epochs, options.folds, options.seed) == (64, 3, 4, 2 ** 32 - 1)
    assert type(options.epochs) is int and type(options.learning_rate) is float and options.dropout == 0.0
    assert options.backbone == "hog+lbp"


@pytest.mark.parametrize("value, expected", [(None, None), ("auto", None), ("0.5", 0.5), (1_000_000, 1e6)])
def test_regularization_is_auto_or_a_positive_number(value, expected):
    assert TrainingOptions.from_dict({"regularization": value}).regularization == expected


def test_the_defaults_are_allowed_and_a_job_record_reads_back():
    defaults = TrainingOptions()
    assert list(OPTION_SPECS) == list(asdict(defaults))
    assert all(spec.default == getattr(defaults, name) for name, spec in OPTION_SPECS.items())
    assert TrainingOptions.from_dict(json.loads(json.dumps(asdict(defaults)))) == defaults


@pytest.fixture
def admin_token(app, tmp_path):
    """Import a small dataset named colours into the app; return an administrator's API token."""
    from web.services import datasets_root

    archive = write_zip(tmp_path / "colours.zip", synthetic_entries(per_class=5))
    with app.app_context():
        import_dataset(archive, "colours", datasets_root(), face=SYNTHETIC_FACES)
    return make_user(app, "ada", "admin")


@pytest.mark.parametrize("options, name", [
    ('{"epochs": 1e400}', "epochs"), ('{"epochs": Infinity}', "epochs"), ('{"epochs": -Infinity}', "epochs"),
    ('{"learning_rate": NaN}', "learning_rate"), ('{"regularization": NaN}', "regularization"),
    ('{"seed": -1}', "seed"), ('{"seed": 4294967296}', "seed"), ('{"dropout": 1.0}', "dropout"),
    ('{"folds": -1e400}', "folds"), ('{"epochs": "abc"}', "epochs"), ('{"folds": true}', "folds"),
    ('{"seed": 1e400}', "seed"), ('{"dropout": -0.01}', "dropout"), ('{"dropout": NaN}', "dropout"),
    ('{"fine_tune_learning_rate": NaN}', "fine_tune_learning_rate"), ('{"regularization": Infinity}', "regularization"),
])
def test_the_api_answers_422_naming_the_option(client, admin_token, options, name):
    headers = bearer_headers(admin_token)
    response = client.post("/api/v1/training-jobs", headers=headers, content_type="application/json",
                           data=f'{{"dataset": "colours", "options": {options}}}')
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["message"].startswith(f"{name} must be ")
    assert client.get("/api/v1/training-jobs", headers=headers).get_json()["jobs"] == []


@pytest.mark.parametrize("name, value", [("epochs", "1e400"), ("epochs", "nan"), ("epochs", "Infinity"),
                                         ("folds", "true"), ("folds", "-1e400"), ("seed", "-1"), ("seed", "4294967296"),
                                         ("dropout", "1"), ("dropout", "-0.1"), ("regularization", "nan"),
                                         ("learning_rate", "inf"), ("learning_rate", "NaN")])
def test_the_training_form_shows_the_same_message(client, admin_token, app, name, value):
    login(client, "ada")
    response = client.post("/admin/training", data={"dataset": "colours", name: value,
                                                    "csrf_token": form_token(client, "/admin/training")})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and f"{name} must be {OPTION_SPECS[name].allowed()}" in page
    assert ('<details id="advanced-options" open>' in page) == (name not in BASIC_OPTIONS)
    assert "No training job yet." in page


def test_the_training_form_refuses_a_bad_combination_as_the_api_does(client, admin_token):
    login(client, "ada")
    response = client.post("/admin/training", data={"dataset": "colours", "fine_tune_epochs": "2",
                                                    "csrf_token": form_token(client, "/admin/training")})
    assert response.status_code == 422 and "use head softmax" in response.get_data(as_text=True)


def test_the_training_form_offers_every_option_with_its_range(client, admin_token):
    login(client, "ada")
    page = client.get("/admin/training").get_data(as_text=True)
    for name in OPTION_SPECS:
        assert f'name="{name}"' in page
    assert '<input id="epochs" max="1000" min="1" name="epochs" step="1" type="number" value="30">' in page
    assert '<details id="advanced-options">' in page and "a whole number from 0 to 4294967295" in page
    offered = re.findall(r'<option[^>]*value="([^"]+)"', page.split('id="backbone"')[1].split("</select>")[0])
    assert offered == ["auto", *PIPELINES]


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be a whole number from 1 to 1000"),
    (["--epochs", "1e400"], "epochs must be a whole number from 1 to 1000"),
    (["--epochs", "Infinity"], "epochs must be a whole number from 1 to 1000"),
    (["--folds", "-1e400"], "folds must be a whole number from 2 to 20"),
    (["--seed", "-1"], "seed must be a whole number from 0 to 4294967295"),
    (["--seed", "4294967296"], "seed must be a whole number from 0 to 4294967295"),
    (["--regularization", "NaN"], "regularization must be auto or a number above 0 and at most 1000000"),
    (["--dropout", "-0.1"], "dropout must be a number at least 0 and below 1"),
    (["--learning-rate", "nan"], "learning_rate must be a number above 0 and at most 1"),
    (["--regularization", "inf"], "regularization must be auto or a number above 0 and at most 1000000"),
    (["--dropout", "1"], "dropout must be a number at least 0 and below 1"),
    (["--head", "forest"], "head must be one of linear, softmax, svm"),
    (["--backbone", "resnet"], "Unknown backbone"),
])
def test_a_bad_value_on_the_command_line_is_a_usage_error(runner, args, message):
    result = runner.invoke(args=["train", "--dataset", "colours", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_bad_combination_on_the_command_line_exits_1(runner):
    result = runner.invoke(args=["train", "--dataset", "colours", "--fine-tune-epochs", "2"])
    assert result.exit_code == 1 and "use head softmax" in result.output


def stub_version(app):
    """Save a model version that holds only a card with trained thresholds; return its name."""
    from ml.versions.card import ModelCard
    from web.services import get_registry

    def write(folder):
        (folder / "head.bin").write_bytes(b"")
        return ["head.bin"]
    card = ModelCard(labels=["a", "b"], backbone={"name": "hog", "weights": {"name": "none"}}, head="linear",
                     face={"detector": "haar", "fallback": "whole"}, dataset={"id": "d"},
                     metrics={"per_class": {}, "accuracy": 0.5, "macro_f1": 0.5},
                     abstention={"min_probability": 0.5, "min_margin": 0.1})
    with app.app_context():
        return get_registry().save(card, write).version


def stored_thresholds(app, version):
    from web.services import get_registry

    with app.app_context():
        return get_registry().thresholds(version)


@pytest.mark.parametrize("field, label", [("min_probability", "Lowest top probability"),
                                          ("min_margin", "Smallest margin to the second condition")])
@pytest.mark.parametrize("value", ["nan", "sNaN", "-sNaN", "NaN", "inf", "-Infinity", "1e400", "1.5", "-0.1", "abc",
                                   ""])
def test_a_threshold_outside_0_to_1_is_refused_and_nothing_is_stored(app, client, tokens, field, label, value):
    version = stub_version(app)
    login(client, "ada")
    form = {"min_probability": "0.6", "min_margin": "0.2", field: value,
            "csrf_token": form_token(client, "/admin/datasets")}
    response = client.post(f"/admin/models/{version}/thresholds", data=form)
    assert response.status_code == 400
    assert f"{label} must be a number from 0 to 1." in response.get_data(as_text=True)
    assert stored_thresholds(app, version) == {"min_probability": 0.5, "min_margin": 0.1}


def test_a_threshold_from_0_to_1_is_stored(app, client, tokens):
    version = stub_version(app)
    login(client, "ada")
    response = client.post(f"/admin/models/{version}/thresholds", data={
        "min_probability": "1", "min_margin": "0", "csrf_token": form_token(client, "/admin/datasets")})
    assert response.status_code == 302
    assert stored_thresholds(app, version) == {"min_probability": 1.0, "min_margin": 0.0}


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5])
def test_the_registry_refuses_thresholds_outside_0_to_1(app, value):
    from web.services import get_registry

    version = stub_version(app)
    with app.app_context(), pytest.raises(RegistryError, match="between 0 and 1"):
        get_registry().set_thresholds(version, 0.5, value)
