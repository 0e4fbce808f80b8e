"""Request bodies: how large each route's may be, and where uploaded files are held while it runs."""
import io
import os
import tempfile
from pathlib import Path

from flask import Request, current_app, g
from flask.json.provider import DefaultJSONProvider
from flask_login import current_user
from werkzeug.exceptions import BadRequest

PHOTO_ENDPOINTS = {"doctor.predict", "doctor.explain", "api.predict",    # explain: the face crop of a result
                   "admin.model_try", "admin.model_try_explain"}        # a version tried before activation
ARCHIVE_ENDPOINTS = {"admin.datasets", "api.create_dataset", "admin.model_import", "api.import_model"}
# The form fields sent beside a photo (CSRF token, `explain`) and the multipart framing.
PHOTO_FORM_BYTES = 64 * 1024
# Every other body: a login or settings form, a JSON object of training options.
# deploy/nginx.conf holds the same three limits: change them together.
FORM_BYTES = 32 * 1024


def body_limit(endpoint):
    """Return the most bytes a request to `endpoint` may send: a photo or an archive only from those allowed to."""
    config = current_app.config
    if endpoint in PHOTO_ENDPOINTS and sender(endpoint) is not None:
        return config["MAX_IMAGE_BYTES"] + PHOTO_FORM_BYTES
    if endpoint in ARCHIVE_ENDPOINTS and getattr(sender(endpoint), "is_admin", False):
        return config["MAX_CONTENT_LENGTH"]
    return FORM_BYTES


def sender(endpoint):
    """Return the account sending the request (None when anonymous), as far as it is known yet."""
    if endpoint.startswith("api."):
        return g.get("api_user")          # set by the API's token check, which runs before the body is read
    return current_user if current_user.is_authenticated else None


def private_temp_folder():
    """Return the data folder's own temporary folder (mode 700), created on first use."""
    folder = Path(current_app.config["UPLOAD_DIR"]) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


class UploadRequest(Request):
    """A request whose body limit depends on its route and sender, and whose photos stay in memory."""

    @property
    def max_content_length(self):
        """Return the body limit, decided when the body is first read (after the route and sender are known)."""
        if self._max_content_length is not None or not current_app:
            return super().max_content_length
        return body_limit(self.endpoint)

    @max_content_length.setter
    def max_content_length(self, value):
        self._max_content_length = value

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        """Hold an uploaded file in memory, bounded by the body limit; an archive or bundle in a private file.

        Werkzeug would spool any part over 500 KB to the system's temporary folder: a patient's
        photo must never touch the disk, and an archive stays inside the data folder.
        """
        if self.endpoint in ARCHIVE_ENDPOINTS:
            return tempfile.TemporaryFile(dir=private_temp_folder())
        return io.BytesIO()

    def make_form_data_parser(self):
        """Return Werkzeug's form parser, told to raise instead of answering with an empty form."""
        parser = super().make_form_data_parser()
        parser.silent = False     # else a form it cannot read looks empty: "The CSRF token is missing."
        return parser

    def _load_form_data(self):
        try:
            super()._load_form_data()
        except ValueError as error:
            empty = self.parameter_storage_class()
            self.__dict__.update(form=empty, files=empty)     # read once: the body is spent
            if isinstance(error, UnicodeDecodeError):
                raise BadRequest("A file name or form field is not UTF-8 text, so the form cannot be read. "
                                 "Rename the file with plain letters and digits and send it again.") from None
            raise BadRequest(f"The form could not be read ({error}).") from None


class BodyJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deeply for the parser refused as invalid JSON (400), not a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("The JSON is nested too deeply.") from None
