"""The training form: one field per training option, drawn from the options' specs."""
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, ValidationError

from ml.errors import TrainingError
from ml.features.availability import unavailable_pipelines
from ml.learning.options import OPTION_SPECS, PIPELINES, VGG_BLOCKS


def checked_by(spec):
    """Return a form validator that refuses what the option's spec refuses, with the same message."""
    def check(form, field):
        try:
            spec.parse(field.data)
        except TrainingError as error:
            raise ValidationError(str(error)) from None
    return check


def option_field(spec):
    """Return the form field of a training option: a select where its spec offers values, else a text box."""
    label = spec.name.replace("_", " ").capitalize()
    common = {"default": "auto" if spec.auto else spec.default, "description": spec.describe(),
              "validators": [checked_by(spec)]}
    if spec.choices or spec.offered:
        return SelectField(label, choices=[SelectChoice(value) for value in spec.choices or spec.offered],
                           validate_choice=False, **common)
    if spec.kind is str or spec.auto:
        return StringField(label, **common)
    return StringField(label, render_kw={"type": "number", "min": spec.low, "max": spec.high,
                                         "step": 1 if spec.kind is int else "any"}, **common)


# The options the training form shows; the others fold into "Advanced options".
BASIC_OPTIONS = ("backbone", "head", "folds", "weights", "image_size", "epochs", "fine_tune_epochs")


class TrainingForm(FlaskForm):
    dataset = SelectField("Dataset", validators=[DataRequired()])

    def option_fields(self, basic):
        """Return the fields of the basic options, or of the advanced ones, in the order of their specs."""
        return [self[name] for name in OPTION_SPECS if (name in BASIC_OPTIONS) == basic]

    def offer_backbones(self, pretrained_dirs):
        """Label the pipelines that cannot run here; the reasons are listed under the form, without server paths."""
        unavailable = unavailable_pipelines(PIPELINES, pretrained_dirs)
        self.unavailable = {name: reason.replace(str(pretrained_dirs[0]), "models/pretrained/ in the data folder")
                            for name, reason in unavailable.items()} if pretrained_dirs else unavailable
        self.backbone.choices = [SelectChoice(name, f"{name} (unavailable, see below)" if name in self.unavailable
                                              else name) for name in OPTION_SPECS["backbone"].offered]

    def applies_to(self, name):
        """Return {"backbones": ..., "heads": ...}, the choices for which an option matters (absent: all of them).

        `auto` compares the VGG16 blocks only where they can run, so their options matter to it only there.
        """
        rules, where = OPTION_SPECS[name].applies_to, {}
        if "backbone" in rules:
            runs_vgg = any(block not in self.unavailable for block in VGG_BLOCKS)
            where["backbones"] = [b for b in rules["backbone"] if b != "auto" or runs_vgg]
        if "head" in rules:
            where["heads"] = list(rules["head"])
        return where

    def shown(self, field):
        """Say whether to show an option's field: it matters to the chosen backbone and head, or it is wrong."""
        if field.name not in OPTION_SPECS or field.errors:
            return True
        where = self.applies_to(field.name)
        return self.backbone.data in where.get("backbones", [self.backbone.data]) and \
            self.head.data in where.get("heads", [self.head.data])

    def validate_backbone(self, field):
        reason = self.unavailable.get(field.data)
        # The VGG blocks lack only their pretrained weights; with weights none or a file they run.
        if reason and (field.data not in VGG_BLOCKS or self.weights.data == "pretrained"):
            raise ValidationError(f"{field.data} is unavailable: {reason}.")


# One field per training option, in the order of the specs (after the dataset).
for spec in OPTION_SPECS.values():
    setattr(TrainingForm, spec.name, option_field(spec))
