"""Deterministic procedural screenshot / diagram scenes with questions and one-word answers.

    scene = make_scene(seed)          # same seed -> same scene, image bytes and questions
    scene.image                       # PIL RGB image, IMAGE_SIZE x IMAGE_SIZE (168: 12 x 12 patches of 14)
    scene.qa                          # [(type, question, answer)], at most one per question type
    scene.aux                         # image-level targets for the [CLS] objective (see AUX_HEADS)

Every scene is a small "window": a title bar with a title word (drawn at 2x the PIL bitmap font so it
stays legible at 168 px), an optional status bar with small text, and a content area that is either
  - "shapes": 3-6 circles / squares / triangles in six colours and two sizes, or
  - "diagram": 2-3 coloured boxes labelled with a letter and one arrow from one box to another.

Question types (answers are single words from a small vocabulary, see ANSWERS):
  colour    what colour is the <named shape | box X> ?            -> red, green, ...
  count     how many <colour> shapes are there ?                   -> zero .. four
  position  where is the <A> relative to the <B> ?                 -> left, right, above, below
  label     what is the label of the <colour> box ?                -> A .. H
  arrow     which box does the arrow point to ?                    -> A .. H
  title     what is the title ?                                    -> a title word
Relative positions are only asked when one axis clearly dominates (no near-diagonal pairs).
"""

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 168
TITLE_BAR = 24
STATUS_BAR = 16

COLOURS = {
    "red": (214, 48, 42),
    "green": (46, 158, 68),
    "blue": (38, 92, 214),
    "yellow": (236, 200, 28),
    "orange": (246, 128, 18),
    "purple": (138, 66, 184),
}
COLOUR_NAMES = list(COLOURS)
KINDS = ["circle", "square", "triangle"]
SIZES = ["big", "small"]
LETTERS = list("ABCDEFGH")
TITLES = ["home", "files", "chart", "notes", "mail", "music", "photos", "maps", "code", "shop"]
STATUS_WORDS = ["ready", "saved", "online", "done", "error", "sync"]
COUNT_WORDS = ["zero", "one", "two", "three", "four"]
DIRECTIONS = ["left", "right", "above", "below"]

QUESTION_TYPES = ["colour", "count", "position", "label", "arrow", "title"]
ANSWERS = {
    "colour": COLOUR_NAMES,
    "count": COUNT_WORDS,
    "position": DIRECTIONS,
    "label": LETTERS,
    "arrow": LETTERS,
    "title": TITLES,
}
# Image-level targets for the auxiliary [CLS] objective: name -> number of classes.
AUX_HEADS = {**{f"count_{c}": 5 for c in COLOUR_NAMES}, "layout": 2, "title": len(TITLES), "has_status": 2}

QUESTION_WORDS = (
    "what colour is the how many shapes are there where relative to of label box which does arrow point title ?"
).split()

BACKGROUNDS = [(255, 255, 255), (246, 246, 240), (236, 240, 246), (242, 238, 230)]
BAR_STYLES = [((52, 60, 78), (255, 255, 255)), ((214, 218, 226), (20, 20, 20)), ((38, 110, 160), (255, 255, 255))]
FONT = ImageFont.load_default()


def vocabulary_words():
    """Every word that can appear in a question or an answer (the tokenizer splits \\w+ and [^\\w\\s]+)."""
    words = []
    for word in QUESTION_WORDS + SIZES + KINDS + COLOUR_NAMES + COUNT_WORDS + DIRECTIONS + LETTERS + TITLES:
        if word not in words:
            words.append(word)
    return words


def chance_levels():
    """Uniform chance per question type (1 / number of possible answers)."""
    return {t: 1.0 / len(ANSWERS[t]) for t in QUESTION_TYPES}


@dataclass
class Scene:
    seed: int
    layout: str
    image: Image.Image
    qa: list = field(default_factory=list)
    aux: dict = field(default_factory=dict)


# ---- drawing helpers ----


def draw_text(image, xy, text, colour, scale):
    """PIL's bitmap font, scaled by an integer factor with nearest neighbour (crisp pixels)."""
    left, top, right, bottom = FONT.getbbox(text)
    mask = Image.new("L", (right, bottom), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=FONT)
    if scale != 1:
        mask = mask.resize((right * scale, bottom * scale), Image.NEAREST)
    image.paste(Image.new("RGB", mask.size, colour), xy, mask)
    return mask.size


def text_size(text, scale):
    left, top, right, bottom = FONT.getbbox(text)
    return right * scale, bottom * scale


def ink_for(colour_name):
    return (0, 0, 0) if colour_name in ("yellow", "orange") else (255, 255, 255)


def draw_shape(draw, kind, colour, cx, cy, half):
    box = [cx - half, cy - half, cx + half, cy + half]
    outline = tuple(max(0, v - 70) for v in colour)
    if kind == "circle":
        draw.ellipse(box, fill=colour, outline=outline)
    elif kind == "square":
        draw.rectangle(box, fill=colour, outline=outline)
    else:
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=colour, outline=outline)


def draw_arrow(draw, start, end, colour, width=2, head=7):
    (x0, y0), (x1, y1) = start, end
    length = max(1e-6, ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    base = (x1 - ux * head * 1.4, y1 - uy * head * 1.4)
    draw.line([start, base], fill=colour, width=width)
    draw.polygon([(x1, y1), (base[0] - uy * head, base[1] + ux * head), (base[0] + uy * head, base[1] - ux * head)], fill=colour)


# ---- geometry ----


def overlaps(a, b, gap):
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def place_boxes(rng, sizes, area, gap, tries=400):
    """Non-overlapping axis-aligned boxes [x0, y0, x1, y1] of the given (w, h) inside area, or None."""
    placed = []
    for w, h in sizes:
        for _ in range(tries):
            x0 = rng.randint(area[0], area[2] - w)
            y0 = rng.randint(area[1], area[3] - h)
            box = (x0, y0, x0 + w, y0 + h)
            if all(not overlaps(box, other, gap) for other in placed):
                placed.append(box)
                break
        else:
            return None
    return placed


def centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def relation(a, b, margin=14, ratio=1.6):
    """Where box a is relative to box b, when one axis clearly dominates; else None."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    dx, dy = ax - bx, ay - by
    if abs(dx) >= margin and abs(dx) >= ratio * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) >= margin and abs(dy) >= ratio * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def border_point(box, towards):
    """Point where the ray from the box centre towards `towards` leaves the box."""
    cx, cy = centre(box)
    dx, dy = towards[0] - cx, towards[1] - cy
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    scale = min(half_w / abs(dx) if dx else float("inf"), half_h / abs(dy) if dy else float("inf"))
    return (cx + dx * scale, cy + dy * scale)


def segment_hits_box(p, q, box, steps=40):
    for i in range(steps + 1):
        t = i / steps
        x, y = p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t
        if box[0] - 3 <= x <= box[2] + 3 and box[1] - 3 <= y <= box[3] + 3:
            return True
    return False


# ---- scenes ----


def unique_descriptions(objects, keys):
    """For each object, the first attribute combination (from `keys`) that names it uniquely, or None."""
    result = []
    for obj in objects:
        found = None
        for combo in keys:
            matching = [o for o in objects if all(o[k] == obj[k] for k in combo)]
            if len(matching) == 1:
                found = " ".join(obj[k] for k in combo)
                break
        result.append(found)
    return result


def shapes_content(rng, image, draw, area):
    count_colour = rng.choice(COLOUR_NAMES)
    total = rng.randint(3, 6)
    k = rng.randint(1, min(4, total))
    others = [c for c in COLOUR_NAMES if c != count_colour]
    colours = [count_colour] * k + [rng.choice(others) for _ in range(total - k)]
    rng.shuffle(colours)
    objects = []
    for colour in colours:
        size = rng.choice(SIZES)
        half = rng.randint(13, 17) if size == "big" else rng.randint(7, 9)
        objects.append({"kind": rng.choice(KINDS), "colour": colour, "size": size, "half": half})
    boxes = place_boxes(rng, [(2 * o["half"] + 1, 2 * o["half"] + 1) for o in objects], area, gap=5)
    if boxes is None:
        return None
    for obj, box in zip(objects, boxes):
        obj["box"] = box
        cx, cy = centre(box)
        draw_shape(draw, obj["kind"], COLOURS[obj["colour"]], cx, cy, obj["half"])

    qa = []
    # colour of a shape named by kind (and size when needed), never by its colour
    named = [(o, d) for o, d in zip(objects, unique_descriptions(objects, [("kind",), ("size", "kind")])) if d]
    if named:
        obj, desc = rng.choice(named)
        qa.append(("colour", f"what colour is the {desc} ?", obj["colour"]))
    # count of one colour (sometimes an absent colour -> zero)
    absent = [c for c in COLOUR_NAMES if c not in colours]
    if rng.random() < 0.15 and absent:
        asked = rng.choice(absent)
    else:
        asked = count_colour
    qa.append(("count", f"how many {asked} shapes are there ?", COUNT_WORDS[colours.count(asked)]))
    # relative position of two shapes named by colour + kind (+ size)
    descs = unique_descriptions(objects, [("colour", "kind"), ("size", "colour", "kind")])
    pairs = [(i, j) for i in range(len(objects)) for j in range(len(objects)) if i != j and descs[i] and descs[j]]
    rng.shuffle(pairs)
    for i, j in pairs:
        rel = relation(objects[i]["box"], objects[j]["box"])
        if rel:
            qa.append(("position", f"where is the {descs[i]} relative to the {descs[j]} ?", rel))
            break
    return objects, qa


def diagram_content(rng, image, draw, area):
    n = rng.randint(2, 3)
    sizes = [(rng.randint(38, 52), rng.randint(26, 32)) for _ in range(n)]
    boxes = place_boxes(rng, sizes, area, gap=18)
    if boxes is None:
        return None
    colours = rng.sample(COLOUR_NAMES, n)
    letters = rng.sample(LETTERS, n)
    source, target = rng.sample(range(n), 2)
    start = border_point(boxes[source], centre(boxes[target]))
    end = border_point(boxes[target], centre(boxes[source]))
    if ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5 < 16:
        return None
    if any(segment_hits_box(start, end, boxes[i]) for i in range(n) if i not in (source, target)):
        return None
    objects = []
    for box, colour, letter in zip(boxes, colours, letters):
        draw.rectangle(box, fill=COLOURS[colour], outline=(30, 30, 30))
        w, h = text_size(letter, 2)
        cx, cy = centre(box)
        draw_text(image, (int(cx - w / 2), int(cy - h / 2) + 1), letter, ink_for(colour), 2)
        objects.append({"kind": "box", "colour": colour, "letter": letter, "box": box})
    draw_arrow(draw, start, end, (25, 25, 25))

    qa = []
    i = rng.randrange(n)
    qa.append(("label", f"what is the label of the {colours[i]} box ?", letters[i]))
    j = rng.randrange(n)
    qa.append(("colour", f"what colour is box {letters[j]} ?", colours[j]))
    qa.append(("arrow", "which box does the arrow point to ?", letters[target]))
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    rng.shuffle(pairs)
    for a, b in pairs:
        rel = relation(boxes[a], boxes[b])
        if rel:
            qa.append(("position", f"where is box {letters[a]} relative to box {letters[b]} ?", rel))
            break
    return objects, qa


def make_scene(seed):
    """The scene of this seed (retries internally with derived randomness until a layout fits)."""
    rng = random.Random(f"ficoco-scene-{seed}")
    while True:
        background = rng.choice(BACKGROUNDS)
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
        draw = ImageDraw.Draw(image)
        bar, ink = rng.choice(BAR_STYLES)
        draw.rectangle([0, 0, IMAGE_SIZE - 1, TITLE_BAR - 1], fill=bar)
        title = rng.choice(TITLES)
        draw_text(image, (6 + rng.randint(0, 30), 2), title, ink, 2)
        for b in range(3):  # window buttons (grey, so they never count as coloured shapes)
            x = IMAGE_SIZE - 12 - 11 * b
            draw.rectangle([x, 8, x + 7, 15], fill=(150, 150, 150), outline=(100, 100, 100))
        has_status = rng.random() < 0.5
        bottom = IMAGE_SIZE - 4
        if has_status:
            top = IMAGE_SIZE - STATUS_BAR
            draw.rectangle([0, top, IMAGE_SIZE - 1, IMAGE_SIZE - 1], fill=(222, 222, 222))
            draw_text(image, (4 + rng.randint(0, 80), top + 2), rng.choice(STATUS_WORDS), (60, 60, 60), 1)
            bottom = top - 4
        area = (4, TITLE_BAR + 4, IMAGE_SIZE - 5, bottom)
        layout = "shapes" if rng.random() < 0.5 else "diagram"
        content = (shapes_content if layout == "shapes" else diagram_content)(rng, image, draw, area)
        if content is None:
            continue
        objects, qa = content
        qa.append(("title", "what is the title ?", title))
        aux = {f"count_{c}": min(4, sum(o["colour"] == c for o in objects)) for c in COLOUR_NAMES}
        aux.update({"layout": int(layout == "diagram"), "title": TITLES.index(title), "has_status": int(has_status)})
        return Scene(seed=seed, layout=layout, image=image, qa=qa, aux=aux)
