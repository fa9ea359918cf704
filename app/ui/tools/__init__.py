"""Canvas tools: Qt glue between the canvas, the interaction state machines and the session."""
