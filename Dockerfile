# FaceDx for the GPU server. Build: docker build -t facedx .
# Run:   docker run --gpus all -p 8000:8000 -v facedx-data:/data facedx
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    MALLOC_MMAP_THRESHOLD_=4194304 \
    FACEDX_DATA_DIR=/data \
    FACEDX_BIND=0.0.0.0:8000

WORKDIR /app
COPY requirements.txt ./
# The GPU build of TensorFlow brings its CUDA libraries as wheels; everything else is shared
# with the CPU pins in requirements-cpu.txt.
RUN pip install --no-cache-dir -r requirements.txt "tensorflow[and-cuda]==2.21.0"

COPY app.py config.py gunicorn.conf.py logsafe.py worker.py wsgi.py ./
COPY ml ./ml
COPY web ./web
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY models/pretrained/README.md ./models/pretrained/README.md

RUN useradd --create-home --uid 10001 facedx && mkdir -p /data && chown facedx /data
USER facedx
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)"

# Schema up to date (and, on the very first start, the admin's password in the log), then serve.
# Right for one container; compose.yaml runs setup once in its own service and starts its web
# nodes with gunicorn alone, so that several nodes never run setup at once.
CMD ["sh", "-c", "flask --app app setup && exec gunicorn --config gunicorn.conf.py wsgi:app"]
