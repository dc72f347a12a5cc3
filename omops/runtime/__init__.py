"""``om.runtime``: run model actions and batches locally or on Celery workers."""

from omops.runtime.jobs import JobProxy
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import TaskResult
from omops.runtime.runtime import ModelProxy, Runtime, ScriptProxy

__all__ = ["Batch", "JobProxy", "ModelProxy", "Runtime", "ScriptProxy", "TaskCall", "TaskResult"]
