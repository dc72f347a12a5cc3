"""``om.runtime``: run model actions and batches locally or on Celery workers."""

from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import TaskResult
from omops.runtime.runtime import ModelProxy, Runtime, ScriptProxy

__all__ = ["Batch", "ModelProxy", "Runtime", "ScriptProxy", "TaskCall", "TaskResult"]
