"""Recording a run as a session: a manifest and a crash-safe event log (docs/sessions.md).

`SessionRecorder` is what backtests and the engine write through; reading,
replaying and comparing sessions is `tradesim.sessions`.
"""

from tradesim.recording.manifest import LOG_DIR, MANIFEST_NAME, ManifestError, file_sha256, load_manifest
from tradesim.recording.recorder import RecordingError, SessionRecorder, default_sessions_folder

__all__ = ["LOG_DIR", "MANIFEST_NAME", "ManifestError", "RecordingError", "SessionRecorder", "default_sessions_folder",
           "file_sha256", "load_manifest"]
