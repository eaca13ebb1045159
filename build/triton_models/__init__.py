"""Model files for Triton's python backend, copied into a repository by build.triton_repo.

They run inside ``tritonserver`` (the server venv: numpy<2, onnxruntime,
triton_python_backend_utils), never in the project's own process, so nothing
in the project imports them.
"""
