"""`audiosum serve`'s GET /v1/models and /v1/models/{id}, read by the official SDK with strict response validation."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from peers import RunningServer, start_server, stop_server
from runs import run_cli

SHUTDOWN = "2027-02-14"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("--engine", "tone", "--shutdown", f"gpt-4o-audio-preview={SHUTDOWN}")
    yield running
    stop_server(running)


def _client(server: RunningServer, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key or server.key or "none", max_retries=0,
                         _strict_response_validation=True)


def test_a_model_it_serves_is_a_model_object(server: RunningServer) -> None:
    model = _client(server).models.retrieve("gpt-audio-1.5")
    assert (model.id, model.object, model.owned_by) == ("gpt-audio-1.5", "model", "audiosum")
    assert isinstance(model.created, int) and model.shutdown_date is None
    assert "shutdown_date" not in model.model_dump(exclude_unset=True)  # absent, not null, when none is announced


def test_an_announced_shutdown_date_is_in_the_object_and_the_list(server: RunningServer) -> None:
    client = _client(server)
    assert client.models.retrieve("gpt-4o-audio-preview").shutdown_date == SHUTDOWN
    listed = {m.id: m for m in client.models.list()}
    assert listed["gpt-4o-audio-preview"].shutdown_date == SHUTDOWN
    assert {"gpt-audio-1.5", "gpt-audio-mini"} <= set(listed)
    assert all(m.object == "model" for m in listed.values())


def test_an_unknown_model_is_a_404_in_openais_shape(server: RunningServer) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        _client(server).models.retrieve("gpt-nonesuch")
    assert raised.value.status_code == 404
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "gpt-nonesuch" in error["message"] and error["param"] is None


def test_the_models_endpoints_need_the_key(server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(server, key="sk-not-the-key").models.retrieve("gpt-audio-1.5")
    with pytest.raises(openai.AuthenticationError):
        _client(server, key="sk-not-the-key").models.list()


@pytest.mark.parametrize("value", ["gpt-nonesuch=2027-01-01", "gpt-audio-1.5=soon", "gpt-audio-1.5"])
def test_a_shutdown_option_that_cannot_be_read_is_a_usage_error(value: str) -> None:
    result = run_cli("serve", "--port", "0", "--shutdown", value)
    assert result.exit_code == 2 and "--shutdown" in result.stderr
