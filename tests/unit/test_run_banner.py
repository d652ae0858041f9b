"""What `make run` prints: the one address a newcomer needs first, the rest for operators."""

from __future__ import annotations

import re

from localenv.run import banner

URL = re.compile(r"https?://\S+")


def test_the_sandbox_banner_leads_with_the_web_chat_alone():
    lead, heading, operators = banner({"FLOWER_BASIC_AUTH": "admin:pw", "SANDBOX_STRIPE": "1"}).partition(
        "For operators:")
    assert heading
    assert URL.findall(lead) == ["http://127.0.0.1:8081/"]  # the README promises this one address
    assert "Ctrl-C" in lead
    assert URL.findall(operators) == [
        "http://127.0.0.1:8081/_sandbox/", "http://127.0.0.1:12111", "http://127.0.0.1:8080/healthz",
        "http://127.0.0.1:8082/", "http://127.0.0.1:9808/metrics", "http://127.0.0.1:5555",
    ]
    assert "password pw" in operators


def test_with_a_real_bot_there_is_no_web_chat_to_point_to():
    lead, heading, operators = banner({"FLOWER_BASIC_AUTH": "admin:pw", "BOT_TOKEN": "1:x"}).partition(
        "For operators:")
    assert heading and URL.findall(lead) == [] and "write to it in Telegram" in lead
    assert "8081" not in operators and "12111" not in operators
