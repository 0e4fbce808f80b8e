"""Forms of a model version's page: its intended use and its abstention thresholds."""
from flask_wtf import FlaskForm
from wtforms import DecimalField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError


class IntendedUseForm(FlaskForm):
    text = TextAreaField("Intended use", validators=[DataRequired("Say what the model is for."),
                                                     Length(max=2000, message="Keep it under 2,000 characters.")])


def probability(form, field):
    """Refuse a threshold that is not a number from 0 to 1 (NaN and infinities included)."""
    if field.data is None or not field.data.is_finite() or not 0 <= field.data <= 1:
        raise ValidationError(f"{field.label.text} must be a number from 0 to 1.")


class ThresholdsForm(FlaskForm):
    min_probability = DecimalField("Lowest top probability", places=2, validators=[probability])
    min_margin = DecimalField("Smallest margin to the second condition", places=2, validators=[probability])
