"""Sharing on the Hugging Face Hub: a run's adapter with its model card (`model`), a
workspace's approved export with its dataset card (`dataset`), both through one upload
(`hub`). A dry run writes exactly the folder that would be uploaded and sends nothing.
No gradio here; the CLI (`push`, `push-dataset`) and the Train tab call the same functions.
"""

from medart.sharing.dataset import push_dataset
from medart.sharing.hub import ShareResult, hub_token, login_help
from medart.sharing.model import push_model

__all__ = ["ShareResult", "hub_token", "login_help", "push_dataset", "push_model"]
