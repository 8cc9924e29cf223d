"""Emulation of Runware's REST task API (PROVIDERS.md §1): one endpoint taking a JSON array of
tasks (imageInference, getResponse, modelSearch, authentication), answering {"data": [...]} with
one item per image (one per search), and errors scoped to the task in any of Runware's three
documented envelopes.

Model facts here (which model takes which parameters and sizes) are the far end's knowledge;
the service reads its own from the catalog.
"""

from __future__ import annotations

import base64
import random
import re
import uuid
from typing import Any, overload

from creditgate.providers.sandbox.render import render_png
from creditgate.providers.sandbox.state import ImageSpec, SandboxState
from creditgate.providers.sandbox.wire import Call, Reply

DOCS = "https://runware.ai/docs/en/image-inference/api-reference"
AIR = re.compile(r"^[a-z0-9_-]+:\d+@\d+$")
OUTPUT_TYPES = {"URL", "base64Data", "dataURI"}
NANO_BANANA_PRO_SIZES = {"1024x1024", "1264x848", "848x1264", "1200x896", "896x1200", "928x1152", "1152x928",
                         "768x1376", "1376x768", "1548x672", "2048x2048", "2528x1696", "1696x2528", "2400x1792",
                         "1792x2400", "1856x2304", "2304x1856", "1536x2752", "2752x1536", "3168x1344"}
IMAGEN_4_SIZES = {"1024x1024", "768x1408", "1408x768", "896x1280", "1280x896"}
FIXED_SIZES = {"google:4@2": NANO_BANANA_PRO_SIZES, "google:2@1": IMAGEN_4_SIZES, "google:2@2": IMAGEN_4_SIZES}
UNSUPPORTED = {"google:4@2": {"negativePrompt", "steps", "CFGScale"}}
FIXED_PRICE = {"google:4@2": 0.138, "google:2@1": 0.04, "google:2@2": 0.06}
# What the model search finds (PROVIDERS.md §0, §1.6): AIR -> (name, version, architecture).
# Any other AIR is still served by imageInference, so tests may configure models of their own.
SEARCHABLE = {
    "runware:97@1": ("HiDream-I1 Full", "Full", "hidream"),
    "runware:97@2": ("HiDream-I1 Dev", "Dev", "hidream"),
    "runware:97@3": ("HiDream-I1 Fast", "Fast", "hidream"),
    "google:4@1": ("Nano Banana (Gemini 2.5 Flash Image)", "2.5 Flash Image", "gemini"),
    "google:4@2": ("Nano Banana Pro (Gemini 3 Pro Image Preview)", "3 Pro Image Preview", "gemini"),
    "google:2@1": ("Imagen 4 Preview", "Preview", "imagen"),
    "google:2@2": ("Imagen 4 Ultra", "Ultra", "imagen"),
    "google:2@3": ("Imagen 4 Fast", "Fast", "imagen"),
}


class TaskError(Exception):
    def __init__(self, status: int, code: str, message: str, parameter: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.parameter = status, code, message, parameter

    def as_dict(self, task: dict | None) -> dict:
        task = task or {}
        return {"code": self.code, "message": self.message, "parameter": self.parameter,
                "taskType": task.get("taskType"), "taskUUID": task.get("taskUUID"), "documentation": DOCS}


def _envelope(state: SandboxState, errors: list[dict], data: list[dict] | None = None) -> Any:
    if data:
        return {"data": data, "errors": errors}
    shape = state.knobs.runware_error_envelope
    if shape == "error":
        first = errors[0]
        return {"error": first, "taskUUID": first.get("taskUUID"), "taskType": first.get("taskType")}
    if shape == "list":
        return errors
    return {"errors": errors}


def _fail(state: SandboxState, error: TaskError, task: dict | None = None, headers: dict | None = None) -> Reply:
    return Reply(error.status, _envelope(state, [error.as_dict(task)]), headers=headers or {})


def handle(state: SandboxState, call: Call, *, base_url: str) -> Reply:
    try:
        tasks = call.json()
    except ValueError:
        return _fail(state, TaskError(400, "invalidJSON", "The request body is not valid JSON."))
    state.record("runware", tasks)
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
        return _fail(state, TaskError(400, "invalidRequestBody", "The request body must be a JSON array of tasks."))
    for task in tasks:
        state.record(f"runware.{task.get('taskType')}", task)

    key = state.knobs.api_key
    auth_tasks = [t for t in tasks if t.get("taskType") == "authentication"]
    authorized = any(t.get("apiKey") == key for t in auth_tasks) if auth_tasks else call.bearer() == key
    if not authorized:
        return _fail(state, TaskError(401, "invalidApiKey", "Invalid API key. Get one at https://my.runware.ai"),
                     auth_tasks[0] if auth_tasks else None)

    fault = state.draw_fault("runware") if any(t.get("taskType") == "imageInference" for t in tasks) else None
    retry = state.knobs.retry_after_s
    if fault == "rate_limit":
        return _fail(state, TaskError(429, "rateLimitExceeded", "The model's queue is full. Retry with backoff."),
                     headers={"Retry-After": f"{retry:g}"})
    if fault == "server_error":
        return _fail(state, TaskError(500, "internalServerError", "An internal error occurred."))
    if fault == "quota":
        return _fail(state, TaskError(402, "insufficientCredits", "Insufficient credits. Top up your account."))

    data: list[dict] = []
    errors: list[dict] = []
    status = 200
    for task in tasks:
        kind = task.get("taskType")
        try:
            if kind == "authentication":
                data.append({"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())})
            elif kind == "imageInference":
                items, failed = _image_inference(state, task, fault, base_url=base_url)
                data.extend(items)
                errors.extend(failed)
            elif kind == "modelSearch":
                data.append(_model_search(state, task))
            elif kind == "getResponse":
                stored = state.task(str(task.get("taskUUID")))
                if stored is None:
                    raise TaskError(400, "taskNotFound", "No task with this taskUUID.", "taskUUID")
                data.extend(stored["data"])
                errors.extend(stored["errors"])
            else:
                raise TaskError(400, "unsupportedTaskType", f"Unsupported taskType {kind!r}.", "taskType")
        except TaskError as exc:
            errors.append(exc.as_dict(task))
            status = max(status, exc.status)
            if kind == "imageInference" and isinstance(task.get("taskUUID"), str) and task["taskUUID"]:
                # The task ran and failed: getResponse answers with its error, as for any finished task.
                state.remember_task(task["taskUUID"], {"data": [], "errors": [exc.as_dict(task)]})
    if data:
        status = 200  # errors scoped to tasks travel beside the other tasks' results
    body = {"data": data, **({"errors": errors} if errors else {})} if data else _envelope(state, errors)
    reply = Reply(status, body)
    reply.hang = fault == "timeout"
    return reply


@overload
def _int(task: dict, name: str, low: int, high: int, default: int) -> int: ...
@overload
def _int(task: dict, name: str, low: int, high: int, default: None = None) -> int | None: ...
def _int(task: dict, name: str, low: int, high: int, default: int | None = None) -> int | None:
    """The integer `name` of the task, checked against [low, high]; absent or null means `default`
    (a null used to reach the arithmetic below and fail the whole request with a 500)."""
    value = task.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TaskError(400, f"invalid{name[0].upper()}{name[1:]}", f"{name} must be an integer from {low} to {high}.",
                        name)
    return value


def _image_inference(state: SandboxState, task: dict, fault: str | None, *, base_url: str
                     ) -> tuple[list[dict], list[dict]]:
    task_uuid = task.get("taskUUID")
    if not isinstance(task_uuid, str) or not task_uuid:
        raise TaskError(400, "missingTaskUUID", "taskUUID is required.", "taskUUID")
    model = task.get("model")
    if not isinstance(model, str) or not AIR.match(model):
        raise TaskError(400, "invalidModel", "model must be an AIR identifier such as runware:100@1.", "model")
    if state.model_dropped(model):
        raise TaskError(404, "modelNotFound", f"Model {model} was not found.", "model")
    prompt = task.get("positivePrompt")
    if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
        raise TaskError(400, "invalidPositivePrompt", "positivePrompt must be 2 to 3000 characters.",
                        "positivePrompt")
    for name in sorted(UNSUPPORTED.get(model, set()) & set(task)):
        raise TaskError(400, "unsupportedParameter", f"{name} is not supported by {model}.", name)
    width, height = _int(task, "width", 128, 4096), _int(task, "height", 128, 4096)
    if width is None or height is None:
        raise TaskError(400, "missingDimensions", "width and height must be sent together.", "width")
    if width % 8 or height % 8:
        raise TaskError(400, "invalidWidth", "width and height must be multiples of 8.", "width")
    if model in FIXED_SIZES and f"{width}x{height}" not in FIXED_SIZES[model]:
        raise TaskError(400, "unsupportedDimensions", f"{width}x{height} is not an allowed size for {model}.",
                        "width")
    n = _int(task, "numberResults", 1, 20, default=1)
    steps = _int(task, "steps", 1, 100)
    seed = _int(task, "seed", 1, 2**63 - 1)
    cfg = task.get("CFGScale")
    if cfg is not None and (not isinstance(cfg, int | float) or isinstance(cfg, bool) or not 0 <= cfg <= 50):
        raise TaskError(400, "invalidCFGScale", "CFGScale must be a number from 0 to 50.", "CFGScale")
    if "negativePrompt" in task and not isinstance(task["negativePrompt"], str):
        raise TaskError(400, "invalidNegativePrompt", "negativePrompt must be a string.", "negativePrompt")
    output_type = task.get("outputType", "URL")
    if output_type not in OUTPUT_TYPES:
        raise TaskError(400, "invalidOutputType", "outputType must be URL, base64Data or dataURI.", "outputType")
    if fault == "content_refusal":
        raise TaskError(400, "contentPolicyViolation", "The prompt was blocked by the content policy.",
                        "positivePrompt")

    failed = 0
    if fault == "partial":
        if n == 1:
            raise TaskError(500, "inferenceError", "Inference failed. Please try again.")
        failed = n // 2

    cost = FIXED_PRICE.get(model, round(0.009 * (width * height) / (1024 * 1024) * (steps or 30) / 30, 6))
    items: list[dict] = []
    errors: list[dict] = []
    for index in range(n - failed):
        image_uuid = str(uuid.uuid4())
        image_seed = seed + index if seed is not None else random.randint(1, 2**31 - 1)
        item = {"taskType": "imageInference", "taskUUID": task_uuid, "imageUUID": image_uuid,
                "seed": image_seed, "NSFWContent": False}
        if output_type == "URL":
            state.remember_image(image_uuid, ImageSpec(prompt=prompt, model=model, width=width, height=height,
                                                       seed=image_seed))
            item["imageURL"] = f"{base_url}/runware/images/{image_uuid}.png"
        else:
            encoded = base64.b64encode(render_png(prompt=prompt, model=model, width=width, height=height,
                                                  seed=image_seed)).decode()
            key = "imageBase64Data" if output_type == "base64Data" else "imageDataURI"
            item[key] = encoded if output_type == "base64Data" else f"data:image/png;base64,{encoded}"
        if task.get("includeCost") and state.knobs.runware_cost:
            item["cost"] = cost
        items.append(item)
    errors.extend(TaskError(500, "inferenceError", "Inference failed for this image.").as_dict(task)
                  for _ in range(failed))
    state.remember_task(task_uuid, {"data": items, "errors": errors})
    return items, errors


def _model_search(state: SandboxState, task: dict) -> dict:
    """Runware's modelSearch task, shaped like its documentation and SDK (IModelSearchResponse):
    {taskType, taskUUID, results: [model cards], totalResults}. The search matches the AIR or the
    name; a dropped model is not found, a retiring one is "deprecated" (the search has no date)."""
    task_uuid = task.get("taskUUID")
    if not isinstance(task_uuid, str) or not task_uuid:
        raise TaskError(400, "missingTaskUUID", "taskUUID is required.", "taskUUID")
    search = task.get("search", "")
    if not isinstance(search, str):
        raise TaskError(400, "invalidSearch", "search must be a string.", "search")
    limit, offset = _int(task, "limit", 1, 100, default=20), _int(task, "offset", 0, 10_000, default=0)
    needle = search.strip().lower()
    found = [air for air, (name, _, _) in SEARCHABLE.items()
             if not state.model_dropped(air) and (needle in air.lower() or needle in name.lower())]
    cards: list[dict] = [
        {"air": air, "name": SEARCHABLE[air][0], "version": SEARCHABLE[air][1], "category": "checkpoint",
         "architecture": SEARCHABLE[air][2], "tags": [], "heroImage": "", "private": False, "comment": "",
         "status": "deprecated" if state.model_retirement(air) else "live"}
        for air in found[offset:offset + limit]]
    return {"taskType": "modelSearch", "taskUUID": task_uuid, "results": cards, "totalResults": len(found)}
