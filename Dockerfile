# The image compose.yaml runs as `trainer` and `writer`: the project with a CPU build of torch.
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY trainer ./trainer
COPY store ./store
RUN pip install --no-cache-dir .
ENTRYPOINT ["recstream"]
