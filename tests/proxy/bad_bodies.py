"""Hand-written request bodies for ``POST /v1/chat/completions``, shared by the unit and the HTTP tests.

``BAD_BODIES`` are ``(description, raw body, expected param)``: each must be refused with a 400
``invalid_request_error`` whose ``param`` is the expected one (``None`` for a body that is not a JSON object).
``GOOD_BODIES`` are ``(description, body)``: each must be accepted, and each is valid against OpenAI's
``CreateChatCompletionRequest``.
"""

import orjson

_USER = {"role": "user", "content": "Hello!"}
_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _body(**fields: object) -> bytes:
    """A valid minimal body with ``fields`` added or replaced."""
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [_USER], **fields})


def _messages(*messages: object) -> bytes:
    return _body(messages=list(messages))


def _user_parts(*parts: object) -> bytes:
    return _messages({"role": "user", "content": list(parts)})


def _tool(**function: object) -> bytes:
    return _body(tools=[{"type": "function", "function": {"name": "get_weather", **function}}])


BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    # The body itself.
    ("truncated JSON", b'{"model": "gpt-4o-mini", "messages": [', None),
    ("empty body", b"", None),
    ("not UTF-8", b'{"model": "\xff\xfe"}', None),
    ("JSON array instead of an object", b"[]", None),
    ("JSON string instead of an object", b'"hello"', None),
    ("JSON null", b"null", None),
    ("nesting deeper than the parser allows", b'{"a":' * 5000 + b"1" + b"}" * 5000, None),
    ("number too large for a double", b'{"model": "m", "messages": [], "temperature": 1e400}', None),
    # model and messages.
    ("missing model", b'{"messages": [{"role": "user", "content": "Hello!"}]}', "model"),
    ("empty model", _body(model=""), "model"),
    ("model is a number", _body(model=4), "model"),
    ("missing messages", b'{"model": "gpt-4o-mini"}', "messages"),
    ("empty messages", _body(messages=[]), "messages"),
    ("messages is a string", _body(messages="Hello!"), "messages"),
    ("message is a string", _messages("Hello!"), "messages[0]"),
    ("message without a role", _messages({"content": "Hello!"}), "messages[0].role"),
    ("unknown role", _messages(_USER, {"role": "bot", "content": "Hi"}), "messages[1].role"),
    ("role is not a string", _messages({"role": ["user"], "content": "Hi"}), "messages[0].role"),
    ("name is a number", _messages({"role": "user", "content": "Hi", "name": 7}), "messages[0].name"),
    # Content of system, developer and user messages.
    ("user message without content", _messages({"role": "user"}), "messages[0].content"),
    ("user content is a number", _messages({"role": "user", "content": 42}), "messages[0].content"),
    ("user content is an empty array", _messages({"role": "user", "content": []}), "messages[0].content"),
    ("user content is null", _messages({"role": "user", "content": None}), "messages[0].content"),
    ("developer content is null", _messages({"role": "developer", "content": None}), "messages[0].content"),
    ("system message without content", _messages({"role": "system"}, _USER), "messages[0].content"),
    ("part is a string", _user_parts("Hello!"), "messages[0].content[0]"),
    ("part without a type", _user_parts({"text": "Hi"}), "messages[0].content[0].type"),
    (
        "unknown part type",
        _user_parts({"type": "text", "text": "Describe:"}, {"type": "video_url", "video_url": {"url": "x"}}),
        "messages[0].content[1].type",
    ),
    ("text part with a number", _user_parts({"type": "text", "text": 5}), "messages[0].content[0].text"),
    ("text part without text", _user_parts({"type": "text"}), "messages[0].content[0].text"),
    (
        "image_url is a bare string",
        _user_parts(
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": "https://x/a.png"}
        ),
        "messages[0].content[1].image_url",
    ),
    (
        "image_url without url",
        _user_parts({"type": "image_url", "image_url": {}}),
        "messages[0].content[0].image_url.url",
    ),
    (
        "image detail not in auto/low/high",
        _user_parts({"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "ultra"}}),
        "messages[0].content[0].image_url.detail",
    ),
    (
        "input_audio in an unsupported format",
        _user_parts({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "ogg"}}),
        "messages[0].content[0].input_audio.format",
    ),
    (
        "file part with a numeric file_id",
        _user_parts({"type": "file", "file": {"file_id": 12}}),
        "messages[0].content[0].file.file_id",
    ),
    (
        "image part in a system message",
        _messages(
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}
        ),
        "messages[0].content[0].type",
    ),
    (
        "refusal part in a user message",
        _user_parts({"type": "refusal", "refusal": "no"}),
        "messages[0].content[0].type",
    ),
    # Assistant, tool and function messages.
    (
        "assistant with null content and no tool_calls",
        _messages(_USER, {"role": "assistant", "content": None}),
        "messages[1].content",
    ),
    (
        "assistant without content or tool_calls",
        _messages(_USER, {"role": "assistant"}),
        "messages[1].content",
    ),
    (
        "assistant tool_calls is an object",
        _messages(_USER, {"role": "assistant", "tool_calls": _CALL}),
        "messages[1].tool_calls",
    ),
    (
        "tool call of an unknown type",
        _messages(_USER, {"role": "assistant", "tool_calls": [{**_CALL, "type": "retrieval"}]}),
        "messages[1].tool_calls[0].type",
    ),
    (
        "tool call without an id",
        _messages(
            _USER, {"role": "assistant", "tool_calls": [{"type": "function", "function": _CALL["function"]}]}
        ),
        "messages[1].tool_calls[0].id",
    ),
    (
        "tool call arguments as an object",
        _messages(
            _USER,
            {
                "role": "assistant",
                "tool_calls": [{**_CALL, "function": {"name": "f", "arguments": {"city": "Paris"}}}],
            },
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "image part in an assistant message",
        _messages(
            _USER, {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
        ),
        "messages[1].content[0].type",
    ),
    (
        "tool message without tool_call_id",
        _messages(_USER, {"role": "assistant", "tool_calls": [_CALL]}, {"role": "tool", "content": "18C"}),
        "messages[2].tool_call_id",
    ),
    (
        "tool message without content",
        _messages(
            _USER, {"role": "assistant", "tool_calls": [_CALL]}, {"role": "tool", "tool_call_id": "call_1"}
        ),
        "messages[2].content",
    ),
    (
        "function message without a name",
        _messages(_USER, {"role": "function", "content": "18C"}),
        "messages[1].name",
    ),
    # Sampling parameters.
    ("temperature above 2", _body(temperature=3.5), "temperature"),
    ("temperature below 0", _body(temperature=-0.1), "temperature"),
    ("temperature as a string", _body(temperature="0.7"), "temperature"),
    ("temperature as a boolean", _body(temperature=True), "temperature"),
    ("top_p above 1", _body(top_p=1.5), "top_p"),
    ("n of zero", _body(n=0), "n"),
    ("n above 128", _body(n=129), "n"),
    ("n as a float", _body(n=2.0), "n"),
    ("presence_penalty below -2", _body(presence_penalty=-2.5), "presence_penalty"),
    ("frequency_penalty as a string", _body(frequency_penalty="high"), "frequency_penalty"),
    ("seed as a float", _body(seed=1.5), "seed"),
    ("seed beyond 64 bits", _body(seed=2**63), "seed"),
    ("logprobs as a string", _body(logprobs="yes"), "logprobs"),
    ("top_logprobs above 20", _body(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("top_logprobs without logprobs", _body(top_logprobs=5), "top_logprobs"),
    ("logit_bias as an array", _body(logit_bias=[1, 2]), "logit_bias"),
    ("logit_bias value above 100", _body(logit_bias={"50256": 150}), "logit_bias.50256"),
    # stop.
    ("stop with five sequences", _body(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop with a number", _body(stop=["a", 1]), "stop"),
    ("stop as an empty array", _body(stop=[]), "stop"),
    ("stop as an object", _body(stop={"seq": "a"}), "stop"),
    # Token limits.
    ("max_tokens of zero", _body(max_tokens=0), "max_tokens"),
    ("negative max_tokens", _body(max_tokens=-5), "max_tokens"),
    ("max_tokens as a boolean", _body(max_tokens=True), "max_tokens"),
    ("max_tokens as a string", _body(max_tokens="100"), "max_tokens"),
    ("max_tokens above 2**31-1", _body(max_tokens=2**31), "max_tokens"),
    (
        "max_tokens of 10**30 (parsed as a float)",
        b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1' + b"0" * 30 + b"}",
        "max_tokens",
    ),
    ("max_completion_tokens of zero", _body(max_completion_tokens=0), "max_completion_tokens"),
    ("max_completion_tokens as a float", _body(max_completion_tokens=100.5), "max_completion_tokens"),
    # Streaming.
    ("stream as a string", _body(stream="true"), "stream"),
    ("stream_options without stream", _body(stream_options={"include_usage": True}), "stream_options"),
    (
        "stream_options with stream false",
        _body(stream=False, stream_options={"include_usage": True}),
        "stream_options",
    ),
    ("stream_options as an array", _body(stream=True, stream_options=[True]), "stream_options"),
    (
        "include_usage as a string",
        _body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    (
        "include_obfuscation as a number",
        _body(stream=True, stream_options={"include_obfuscation": 1}),
        "stream_options.include_obfuscation",
    ),
    # Tools.
    ("tools as an object", _body(tools=_WEATHER_TOOL), "tools"),
    ("tool of an unknown type", _body(tools=[{"type": "retrieval"}]), "tools[0].type"),
    ("function tool without a function", _body(tools=[{"type": "function"}]), "tools[0].function"),
    ("function name with a space", _tool(name="get weather"), "tools[0].function.name"),
    ("function name of 65 characters", _tool(name="f" * 65), "tools[0].function.name"),
    (
        "function name missing",
        _body(tools=[{"type": "function", "function": {"description": "x"}}]),
        "tools[0].function.name",
    ),
    ("function parameters as an array", _tool(parameters=[]), "tools[0].function.parameters"),
    ("function strict as a string", _tool(strict="yes"), "tools[0].function.strict"),
    ("custom tool without a name", _body(tools=[{"type": "custom", "custom": {}}]), "tools[0].custom.name"),
    ("tool_choice not in none/auto/required", _body(tools=[_WEATHER_TOOL], tool_choice="any"), "tool_choice"),
    (
        "named tool_choice without function",
        _body(tools=[_WEATHER_TOOL], tool_choice={"type": "function"}),
        "tool_choice.function",
    ),
    (
        "named tool_choice with a numeric name",
        _body(tools=[_WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": 3}}),
        "tool_choice.function.name",
    ),
    (
        "allowed_tools with an unknown mode",
        _body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "all", "tools": []}}),
        "tool_choice.allowed_tools.mode",
    ),
    ("parallel_tool_calls as a string", _body(parallel_tool_calls="true"), "parallel_tool_calls"),
    # response_format.
    ("response_format as a string", _body(response_format="json"), "response_format"),
    ("response_format of an unknown type", _body(response_format={"type": "xml"}), "response_format.type"),
    (
        "json_schema format without json_schema",
        _body(response_format={"type": "json_schema"}),
        "response_format.json_schema",
    ),
    (
        "json_schema without a name",
        _body(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema schema as a string",
        _body(response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": "object"}}),
        "response_format.json_schema.schema",
    ),
    # Everything else.
    ("user as a number", _body(user=42), "user"),
    ("metadata with a numeric value", _body(metadata={"team": 7}), "metadata.team"),
    ("metadata with 17 pairs", _body(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    ("reasoning_effort not in the enum", _body(reasoning_effort="extreme"), "reasoning_effort"),
    ("verbosity not in the enum", _body(verbosity="loud"), "verbosity"),
    ("service_tier not in the enum", _body(service_tier="gold"), "service_tier"),
    ("store as a string", _body(store="yes"), "store"),
    ("modalities with video", _body(modalities=["text", "video"]), "modalities"),
    ("audio output requested without audio", _body(modalities=["text", "audio"]), "audio"),
    ("audio without a format", _body(modalities=["audio"], audio={"voice": "alloy"}), "audio.format"),
    ("prediction of an unknown type", _body(prediction={"type": "diff", "content": "x"}), "prediction.type"),
    ("web_search_options as a string", _body(web_search_options="on"), "web_search_options"),
    ("function_call as an unknown string", _body(function_call="always"), "function_call"),
]


_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

GOOD_BODIES: list[tuple[str, dict]] = [
    (
        "minimal string content",
        {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello!"}]},
    ),
    (
        "system and user with sampling parameters",
        {
            "model": "deepseek-chat",
            "messages": [_SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0.7,
            "max_tokens": 1024,
            "stream": False,
        },
    ),
    (
        "user parts with text and images",
        {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these images?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ],
        },
    ),
    (
        "user parts with audio and a file",
        {
            "model": "gpt-4o-audio-preview",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                        {
                            "type": "file",
                            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                        },
                        {"type": "file", "file": {"file_id": "file-abc123"}},
                    ],
                }
            ],
        },
    ),
    (
        "tools with tool_choice auto",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "tools": [_WEATHER_TOOL],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        },
    ),
    (
        "named tool_choice and a strict function",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "tools": [{"type": "function", "function": {**_WEATHER_TOOL["function"], "strict": True}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
    ),
    (
        "custom tool and allowed_tools tool_choice",
        {
            "model": "gpt-5",
            "messages": [_USER],
            "tools": [
                _WEATHER_TOOL,
                {
                    "type": "custom",
                    "custom": {
                        "name": "sql",
                        "description": "Run a query.",
                        "format": {
                            "type": "grammar",
                            "grammar": {"definition": "start: /.+/", "syntax": "lark"},
                        },
                    },
                },
            ],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        },
    ),
    (
        "response_format json_object",
        {"model": "gpt-4o", "messages": [_USER], "response_format": {"type": "json_object"}},
    ),
    (
        "response_format json_schema",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "greeting",
                    "description": "A greeting.",
                    "schema": {
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                    },
                    "strict": True,
                },
            },
        },
    ),
    (
        "assistant tool_calls with null content, then the tool result",
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "dry"}]},
            ],
            "tools": [_WEATHER_TOOL],
        },
    ),
    (
        "assistant tool_calls without content, a custom call and a refusal",
        {
            "model": "gpt-5",
            "messages": [
                _USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c2", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't."}],
                    "refusal": None,
                    "name": "bot",
                },
            ],
        },
    ),
    (
        "developer role with text parts",
        {
            "model": "o3",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "Be terse."}]}, _USER],
            "reasoning_effort": "low",
        },
    ),
    ("stop as a string", {"model": "gpt-4o", "messages": [_USER], "stop": "\n"}),
    ("stop as a list", {"model": "gpt-4o", "messages": [_USER], "stop": ["END", "###", "\n\n", "Q:"]}),
    (
        "stream with stream_options",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "stream": True,
            "stream_options": {"include_usage": True, "include_obfuscation": False},
        },
    ),
    (
        "unknown extra fields at the top level and in a message",
        {
            "model": "my-local-model",
            "messages": [{"role": "user", "content": "Hi", "x_trace": {"id": 1}}],
            "top_k": 40,
            "repetition_penalty": 1.1,
            "extra_body": {"anything": [1, 2, 3]},
        },
    ),
    (
        "max_completion_tokens together with max_tokens",
        {"model": "gpt-4o", "messages": [_USER], "max_completion_tokens": 256, "max_tokens": 1000},
    ),
    (
        "logprobs, logit_bias, seed, penalties and n",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "logprobs": True,
            "top_logprobs": 5,
            "logit_bias": {"50256": -100, "1234": 5},
            "seed": -42,
            "presence_penalty": -2,
            "frequency_penalty": 1.5,
            "n": 3,
            "top_p": 0.9,
            "temperature": 0,
        },
    ),
    (
        "metadata, store, service tier, verbosity and user",
        {
            "model": "gpt-5",
            "messages": [_USER],
            "metadata": {"team": "search", "ticket": "T-1"},
            "store": True,
            "service_tier": "flex",
            "verbosity": "high",
            "user": "user-1234",
            "safety_identifier": "sha-abc",
            "prompt_cache_key": "pk-1",
        },
    ),
    (
        "prediction, audio output and web search",
        {
            "model": "gpt-4o-audio-preview",
            "messages": [_USER, {"role": "assistant", "audio": {"id": "audio_abc"}}],
            "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "mp3"},
            "prediction": {"type": "content", "content": [{"type": "text", "text": "def f(): pass"}]},
            "web_search_options": {
                "search_context_size": "low",
                "user_location": {"type": "approximate", "approximate": {"country": "FR", "city": "Paris"}},
            },
        },
    ),
    (
        "deprecated functions, function_call and a function message",
        {
            "model": "gpt-3.5-turbo",
            "messages": [
                _USER,
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get_weather", "arguments": "{}"},
                },
                {"role": "function", "name": "get_weather", "content": "18C"},
            ],
            "functions": [_WEATHER_TOOL["function"]],
            "function_call": {"name": "get_weather"},
        },
    ),
    (
        "optional fields set to null",
        {
            "model": "gpt-4o",
            "messages": [_USER],
            "temperature": None,
            "top_p": None,
            "n": None,
            "stop": None,
            "max_tokens": None,
            "max_completion_tokens": None,
            "stream": None,
            "stream_options": None,
            "logprobs": None,
            "logit_bias": None,
            "metadata": None,
            "seed": None,
        },
    ),
]
