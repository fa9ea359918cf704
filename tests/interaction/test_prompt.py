"""The prompt tool state machine, without Qt."""

import numpy as np

from app.core.types import Box, MaskResult, Point
from app.interaction.events import Button, PointerEvent
from app.interaction.prompt_tool import PromptTool


def click(tool: PromptTool, x: float, y: float, button: Button = Button.LEFT,
          shift: bool = False) -> bool:
    tool.press(PointerEvent(x, y, button, shift=shift))
    return tool.release(PointerEvent(x, y, button, shift=shift))


def result(n: int = 3) -> MaskResult:
    masks = np.zeros((n, 8, 8), bool)
    for i in range(n):
        masks[i, : i + 1] = True
    logits = np.stack([np.full((256, 256), float(i), np.float32) for i in range(n)])
    return MaskResult(masks, np.array([0.2, 0.9, 0.5][:n], np.float32), logits)


def test_clicks_make_positive_and_negative_points() -> None:
    tool = PromptTool()
    assert click(tool, 1.5, 2.5)
    assert click(tool, 3.5, 4.5, Button.RIGHT)
    assert click(tool, 5.5, 6.5, shift=True)
    assert tool.points == [Point(1.5, 2.5, True), Point(3.5, 4.5, False), Point(5.5, 6.5, False)]
    assert tool.prompt().box is None


def test_drag_makes_a_box_and_tiny_drag_is_a_click() -> None:
    tool = PromptTool()
    tool.press(PointerEvent(10, 10, Button.LEFT, radius=2))
    assert tool.move(PointerEvent(11, 10, Button.LEFT, radius=2)) is None  # within radius
    assert tool.move(PointerEvent(30, 5, Button.LEFT, radius=2)) == Box(10, 5, 30, 10)
    assert tool.release(PointerEvent(30, 5, Button.LEFT))
    assert tool.box == Box(10, 5, 30, 10) and tool.points == []
    tool.press(PointerEvent(50, 50, Button.LEFT, radius=2))
    tool.move(PointerEvent(51, 50, Button.LEFT, radius=2))
    assert tool.release(PointerEvent(51, 50, Button.LEFT))
    assert tool.points == [Point(50, 50, True)]


def test_result_feeds_chosen_logits_and_tab_cycles() -> None:
    tool = PromptTool()
    click(tool, 1, 1)
    assert tool.prompt().mask_input is None
    tool.set_result(result())
    assert tool.chosen == 1  # best score
    assert tool.prompt().mask_input is not None
    assert float(tool.prompt().mask_input[0, 0, 0]) == 1.0
    assert tool.cycle() == 2
    assert float(tool.prompt().mask_input[0, 0, 0]) == 2.0
    assert tool.chosen_score() == np.float32(0.5)
    assert tool.cycle() == 0
    assert tool.chosen_mask() is not None and tool.chosen_mask().sum() == 8


def test_backspace_and_escape() -> None:
    tool = PromptTool()
    click(tool, 1, 1)
    tool.press(PointerEvent(0, 0, Button.LEFT, radius=1))
    tool.move(PointerEvent(9, 9, Button.LEFT))
    tool.release(PointerEvent(9, 9, Button.LEFT))
    tool.set_result(result())
    assert tool.undo_last() and tool.box is None and len(tool.points) == 1
    assert tool.prompt().mask_input is None
    assert tool.undo_last() and tool.is_empty() and tool.result is None
    assert not tool.undo_last()
    click(tool, 2, 2)
    tool.clear()
    assert tool.is_empty() and tool.cycle() is None


def test_clicks_outside_the_image_are_ignored_and_boxes_clamped() -> None:
    tool = PromptTool()
    tool.bounds = (100.0, 50.0)
    assert not click(tool, 120, 10)
    assert not click(tool, -1, 10)
    tool.press(PointerEvent(90, 40, Button.LEFT, radius=1))
    tool.move(PointerEvent(150, 80, Button.LEFT))
    assert tool.release(PointerEvent(150, 80, Button.LEFT))
    assert tool.box == Box(90, 40, 100, 50)
