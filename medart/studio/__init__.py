"""The app's state without the UI: the owner app's folders, base model and device, the
per-session workspaces of the shared Space and the server folders users may name.

`state.Studio` is what every tab of `medart.ui` works on; `sessions` keeps one temporary
workspace per browser session on the public Space; `paths` checks server paths and run names
against the allowed roots. No gradio here.
"""

from medart.places import default_home
from medart.studio.state import Studio, finished_runs, on_space, shared_public_space

__all__ = ["Studio", "default_home", "finished_runs", "on_space", "shared_public_space"]
