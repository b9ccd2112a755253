"""Write .env.example from the settings table (run after adding a setting; a test checks it)."""

from pathlib import Path

from runner.config import SETTINGS

SECTIONS = {
    "transport": "Server and transports", "max_sessions": "Sessions", "ice_servers": "WebRTC",
    "secret": "Telephony", "api_key": "Security", "drain_timeout": "Operation",
    "daily_api_key": "Daily", "tavus_api_key": "Tavus", "twilio_account_sid": "Twilio",
    "telnyx_api_key": "Telnyx", "plivo_auth_id": "Plivo", "exotel_api_key": "Exotel",
    "vonage_application_id": "Vonage",
}


def render() -> str:
    lines = ["# Every setting runner reads. Copy to .env and fill in what you need.",
             "# Precedence: command-line flag > real environment > this file > default.", ""]
    for setting in SETTINGS:
        if setting.name in SECTIONS:
            lines.append(f"# --- {SECTIONS[setting.name]}")
        flag = f" (flag {setting.flag})" if setting.flag else ""
        mode_default = setting.dev_default is not ... or setting.smoke_default is not ...
        note = f" Default: {setting.describe_default()}." if mode_default else ""
        value = "" if mode_default or setting.default in (None, ()) else str(setting.default)
        lines += [f"# {setting.help}{flag}{note}", f"{setting.env}={value}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    Path(__file__).resolve().parent.parent.joinpath(".env.example").write_text(render())
