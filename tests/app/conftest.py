"""Fixtures shared by the AppTest pages."""
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager


@pytest.fixture()
def downloads(monkeypatch):
    """file name -> bytes of every download button the page renders (AppTest has no click-to-download)."""
    files: dict[str, bytes] = {}
    add = MediaFileManager.add

    def recording_add(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download and file_name:
            files[file_name] = path_or_data.encode() if isinstance(path_or_data, str) else bytes(path_or_data)
        return add(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", recording_add)
    return files
