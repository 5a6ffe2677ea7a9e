"""Deterministic procedural screenshot / diagram scenes with questions and one-word answers.

    scene = make_scene(seed)          # same seed -> same scene, image bytes and questions
    scene.image                       # PIL RGB image, IMAGE_SIZE x IMAGE_SIZE (168: 12 x 12 patches of 14)
    scene.qa                          # [(type, question, answer)], at most one per question type
    scene.aux                         # image-level targets for the [CLS] objective (see AUX_HEADS)
    scene.patch_labels                # per-patch targets for the dense objective (see PATCH_HEADS)
    scene.focus                       # per question, one entry per thing it refers to (at most two):
                                      # (patch indices showing it, indices of the question words naming it)
                                      # for the attention objectives
    scene.all_qa, scene.all_focus     # every question the scene can answer (training uses them all)

Every scene is a small "window": a title bar with a title word in small text (PIL's
bitmap font, 6 x 11 px glyphs, starting at a patch boundary), window buttons, an optional status bar with
small text, and a content area that is either
  - "shapes": 3-6 circles / squares / triangles in six colours and two sizes, or
  - "diagram": 2-3 coloured boxes labelled with a small letter and one arrow from one box to another.

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
# Image-level targets for the auxiliary [CLS] objective, what a caption of the scene would say: per-colour
# object counts, layout, title, status bar, which letters are shown and which one the arrow points to.
# name -> number of classes.
AUX_HEADS = {
    **{f"count_{c}": 5 for c in COLOUR_NAMES},
    **{f"letter_{letter}": 2 for letter in LETTERS},
    "arrow_target": 1 + len(LETTERS),
    "layout": 2,
    "title": len(TITLES),
    "has_status": 2,
}
# Per-patch targets for the dense objective on the visual tokens: name -> number of classes. Class 0 is
# "none"; IGNORE marks patches a head says nothing about (title only on the title bar, arrow roles only on boxes).
PATCH = 14
GRID = IMAGE_SIZE // PATCH
PATCH_KINDS = ["none", *KINDS, "box"]
PATCH_HEADS = {
    "colour": 1 + len(COLOUR_NAMES),
    "kind": len(PATCH_KINDS),
    "size": 1 + len(SIZES),
    "letter": 1 + len(LETTERS),  # only glyph patches are labelled (class 0 unused), so the rare glyphs get a strong signal
    "centre": 2,
    "count": 1 + 5,  # on shapes only: how many objects share this patch's colour (1..5); class 0 unused
    "arrow": 2,
    "arrow_head": 2,
    "arrow_target": 2,
    "arrow_source": 2,
    "title": len(TITLES),
    "title_text": 2,
    "row": GRID,
    "column": GRID,
}
IGNORE = -100
# Values in the label image: objects are 1..n in drawing order, then these regions.
# Box letters are LETTER_ID + box index. Focus keys name what a question looks at: ("object", i),
# ("letter", i) the glyph of box i, ("centre", i) the patch holding object i's centre, ("arrow",), ("title",).
ARROW_ID, TITLE_BAR_ID, TITLE_TEXT_ID, ARROW_HEAD_ID, LETTER_ID = 200, 201, 202, 203, 210
ARROW_OVERLAP = 6  # pixels an arrow's tip reaches into the box it points to
MIN_OBJECT_PIXELS = 12  # an object owns a patch when it covers at least this many of its 196 pixels

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
    focus: list = field(default_factory=list)
    all_qa: list = field(default_factory=list)
    all_focus: list = field(default_factory=list)
    patch_labels: dict = field(default_factory=dict)


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


def ink_for(colour_name):
    return (0, 0, 0) if colour_name in ("yellow", "orange") else (255, 255, 255)


def draw_shape(draw, kind, colour, cx, cy, half, label_image=False):
    """label_image: colour is an object id and the outline gets the same id."""
    box = [cx - half, cy - half, cx + half, cy + half]
    outline = colour if label_image else tuple(max(0, v - 70) for v in colour)
    if kind == "circle":
        draw.ellipse(box, fill=colour, outline=outline)
    elif kind == "square":
        draw.rectangle(box, fill=colour, outline=outline)
    else:
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=colour, outline=outline)


def draw_arrow(draw, start, end, colour, width=2, head=7, head_colour=None):
    """A line from start to a filled triangular head at end (head_colour: the head's own, for the label image)."""
    (x0, y0), (x1, y1) = start, end
    length = max(1e-6, ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    base = (x1 - ux * head * 1.4, y1 - uy * head * 1.4)
    draw.line([start, base], fill=colour, width=width)
    draw.polygon([(x1, y1), (base[0] - uy * head, base[1] + ux * head), (base[0] + uy * head, base[1] - ux * head)], fill=colour if head_colour is None else head_colour)


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


def inner_cell(low, high, middle):
    """Start of the patch cell inside [low + 1, high - 1] whose centre is nearest `middle`."""
    cells = [c for c in range(0, IMAGE_SIZE, PATCH) if c >= low + 1 and c + PATCH - 1 <= high - 1]
    return min(cells, key=lambda c: abs(c + PATCH / 2 - middle))


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


def step_towards(point, target, distance):
    dx, dy = target[0] - point[0], target[1] - point[1]
    length = max(1e-6, (dx * dx + dy * dy) ** 0.5)
    return (point[0] + dx / length * distance, point[1] + dy / length * distance)


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


def shapes_content(rng, image, draw, ids, area):
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
    for index, (obj, box) in enumerate(zip(objects, boxes)):
        obj["box"] = box
        cx, cy = centre(box)
        draw_shape(draw, obj["kind"], COLOURS[obj["colour"]], cx, cy, obj["half"])
        draw_shape(ids, obj["kind"], index + 1, cx, cy, obj["half"], label_image=True)

    named = [(i, d) for i, d in enumerate(unique_descriptions(objects, [("kind",), ("size", "kind")])) if d]
    colour_questions = [shape_colour_question(objects, i, desc) for i, desc in named]
    absent = [c for c in COLOUR_NAMES if c not in colours]
    present = [c for c in COLOUR_NAMES if 0 < colours.count(c) < len(COUNT_WORDS)]
    count_questions = [count_question(objects, c) for c in present + absent[:1]]
    descs = unique_descriptions(objects, [("colour", "kind"), ("size", "colour", "kind")])
    pairs = [(i, j) for i in range(len(objects)) for j in range(len(objects)) if i != j and descs[i] and descs[j]]
    position_questions = [shape_position_question(objects, descs, i, j) for i, j in pairs]

    # The scene's own questions, at most one per type (this exact sequence of rng calls defines the sets).
    asked = []
    if named:
        asked.append(colour_questions[named.index(rng.choice(named))])
    count_asked = rng.choice(absent) if rng.random() < 0.15 and absent else count_colour
    asked.append(count_question(objects, count_asked))
    rng.shuffle(pairs)
    asked += [shape_position_question(objects, descs, i, j) for i, j in pairs if relation(objects[i]["box"], objects[j]["box"])][:1]
    return objects, asked, colour_questions + count_questions + [q for q in position_questions if q[0][2]]


def shape_colour_question(objects, i, desc):
    """Colour of a shape named by kind (and size when needed), never by its colour."""
    return ("colour", f"what colour is the {desc} ?", objects[i]["colour"]), [([("object", i)], desc)]


def count_question(objects, colour):
    count = sum(o["colour"] == colour for o in objects)
    focus = [([("centre", i) for i, o in enumerate(objects) if o["colour"] == colour], colour)]
    return ("count", f"how many {colour} shapes are there ?", COUNT_WORDS[count]), focus


def shape_position_question(objects, descs, i, j):
    """Relative position of two shapes named by colour + kind (+ size); answer None when no axis dominates."""
    rel = relation(objects[i]["box"], objects[j]["box"])
    return ("position", f"where is the {descs[i]} relative to the {descs[j]} ?", rel), [([("object", i)], descs[i]), ([("object", j)], descs[j])]


def diagram_content(rng, image, draw, ids, area):
    n = rng.randint(2, 3)
    sizes = [(rng.randint(40, 52), rng.randint(30, 34)) for _ in range(n)]
    boxes = place_boxes(rng, sizes, area, gap=18)
    if boxes is None:
        return None
    colours = rng.sample(COLOUR_NAMES, n)
    letters = rng.sample(LETTERS, n)
    source, target = rng.sample(range(n), 2)
    start = border_point(boxes[source], centre(boxes[target]))
    end = border_point(boxes[target], centre(boxes[source]))
    # The head overlaps the target's border a little, as drawn arrows usually do.
    end = step_towards(end, centre(boxes[target]), ARROW_OVERLAP)
    if ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5 < 16:
        return None
    if any(segment_hits_box(start, end, boxes[i]) for i in range(n) if i not in (source, target)):
        return None
    objects = []
    for index, (box, colour, letter) in enumerate(zip(boxes, colours, letters)):
        draw.rectangle(box, fill=COLOURS[colour], outline=(30, 30, 30))
        ids.rectangle(box, fill=index + 1)
        # Small text in the patch cell nearest the box centre (boxes are >= 30 px, so one fits inside).
        cell_x, cell_y = (inner_cell(box[0], box[2], centre(box)[0]), inner_cell(box[1], box[3], centre(box)[1]))
        w, h = draw_text(image, (cell_x + 4, cell_y + 2), letter, ink_for(colour), 1)
        ids.rectangle([cell_x + 4, cell_y + 2, cell_x + 4 + w - 1, cell_y + 2 + h - 1], fill=LETTER_ID + index)
        objects.append({"kind": "box", "colour": colour, "letter": letter, "box": box, "role": "target" if index == target else "source" if index == source else "other"})
    draw_arrow(draw, start, end, (25, 25, 25))
    draw_arrow(ids, start, end, ARROW_ID, head_colour=ARROW_HEAD_ID)

    label_questions = [label_question(objects, i) for i in range(n)]
    colour_questions = [box_colour_question(objects, i) for i in range(n)]
    arrow = ("arrow", "which box does the arrow point to ?", letters[target]), [([("letter", target)], "point to"), ([("arrow",)], "arrow")]
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    position_questions = [box_position_question(objects, a, b) for a, b in pairs]

    # The scene's own questions, one per type (this exact sequence of rng calls defines the sets).
    asked = [label_questions[rng.randrange(n)], colour_questions[rng.randrange(n)], arrow]
    rng.shuffle(pairs)
    asked += [box_position_question(objects, a, b) for a, b in pairs if relation(boxes[a], boxes[b])][:1]
    return objects, asked, label_questions + colour_questions + [arrow] + [q for q in position_questions if q[0][2]]


def label_question(objects, i):
    box = objects[i]
    return ("label", f"what is the label of the {box['colour']} box ?", box["letter"]), [([("letter", i)], f"{box['colour']} box")]


def box_colour_question(objects, i):
    box = objects[i]
    return ("colour", f"what colour is box {box['letter']} ?", box["colour"]), [([("letter", i)], f"box {box['letter']}")]


def box_position_question(objects, a, b):
    """Where box a is relative to box b; answer None when no axis dominates."""
    first, second = objects[a], objects[b]
    rel = relation(first["box"], second["box"])
    question = f"where is box {first['letter']} relative to box {second['letter']} ?"
    return ("position", question, rel), [([("letter", a)], f"box {first['letter']}"), ([("letter", b)], f"box {second['letter']}")]


def make_scene(seed):
    """The scene of this seed (retries internally with derived randomness until a layout fits)."""
    rng = random.Random(f"ficoco-scene-{seed}")
    while True:
        background = rng.choice(BACKGROUNDS)
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
        draw = ImageDraw.Draw(image)
        id_image = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
        ids = ImageDraw.Draw(id_image)
        ids.rectangle([0, 0, IMAGE_SIZE - 1, TITLE_BAR - 1], fill=TITLE_BAR_ID)
        bar, ink = rng.choice(BAR_STYLES)
        draw.rectangle([0, 0, IMAGE_SIZE - 1, TITLE_BAR - 1], fill=bar)
        title = rng.choice(TITLES)
        title_x = PATCH * rng.randint(0, 3) + 2  # small text starting at a patch boundary
        title_w, title_h = draw_text(image, (title_x, 2), title, ink, 1)
        ids.rectangle([title_x, 2, title_x + title_w - 1, 2 + title_h - 1], fill=TITLE_TEXT_ID)
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
        content = (shapes_content if layout == "shapes" else diagram_content)(rng, image, draw, ids, area)
        if content is None:
            continue
        objects, asked, candidates = content
        title_question = (("title", "what is the title ?", title), [([("title",)], "title")])
        asked.append(title_question)
        candidates.append(title_question)
        letters = {o["letter"] for o in objects if "letter" in o}
        target = next((o["letter"] for o in objects if o.get("role") == "target"), None)
        aux = {f"count_{c}": min(4, sum(o["colour"] == c for o in objects)) for c in COLOUR_NAMES}
        aux.update({f"letter_{letter}": int(letter in letters) for letter in LETTERS})
        aux.update({"arrow_target": 0 if target is None else 1 + LETTERS.index(target)})
        aux.update({"layout": int(layout == "diagram"), "title": TITLES.index(title), "has_status": int(has_status)})
        patch_labels, owners = label_patches(id_image, objects, title)

        def resolve(groups, question):
            patches = [[p for p, keys in enumerate(owners) if keys & set(group)] for group, _ in groups]
            return list(zip(patches, question_words(question, [phrase for _, phrase in groups])))

        return Scene(
            seed=seed,
            layout=layout,
            image=image,
            qa=[qa for qa, _ in asked],
            focus=[resolve(groups, qa[1]) for qa, groups in asked],
            all_qa=[qa for qa, _ in candidates],
            all_focus=[resolve(groups, qa[1]) for qa, groups in candidates],
            aux=aux,
            patch_labels=patch_labels,
        )


def question_words(question, phrases):
    """Indices in question.split() of each phrase: its first occurrence after the previous phrase, else its first."""
    words, found, start = question.split(), [], 0
    for phrase in phrases:
        wanted = phrase.split()
        starts = [i for i in range(len(words)) if words[i : i + len(wanted)] == wanted]
        at = next((i for i in starts if i >= start), starts[0])
        found.append(list(range(at, at + len(wanted))))
        start = at + len(wanted)
    return found


def label_patches(id_image, objects, title):
    """Per-patch targets (row-major, GRID x GRID) from the label image drawn alongside the scene, and per
    patch the set of focus keys it shows."""
    pixels = id_image.load()
    labels = {name: [] for name in PATCH_HEADS}
    owners = []
    centres = [(int(centre(o["box"])[1]) // PATCH, int(centre(o["box"])[0]) // PATCH) for o in objects]
    for row in range(GRID):
        for column in range(GRID):
            counts = {}
            for y in range(row * PATCH, (row + 1) * PATCH):
                for x in range(column * PATCH, (column + 1) * PATCH):
                    value = pixels[x, y]
                    counts[value] = counts.get(value, 0) + 1
            present = [(n, v) for v, n in counts.items() if 1 <= v <= len(objects) and n >= MIN_OBJECT_PIXELS]
            obj = objects[max(present)[1] - 1] if present else None
            glyphs = [v - LETTER_ID for v, n in counts.items() if v >= LETTER_ID and n >= 4]
            keys = {("object", v - 1) for _, v in present} | {("letter", i) for i in glyphs}
            keys |= {("centre", i) for i, c in enumerate(centres) if c == (row, column)}
            arrow_pixels = counts.get(ARROW_ID, 0) + counts.get(ARROW_HEAD_ID, 0)
            keys |= {("arrow",)} if arrow_pixels >= 4 else set()
            keys |= {("title",)} if counts.get(TITLE_TEXT_ID, 0) >= 4 else set()
            owners.append(keys)
            is_box = obj is not None and obj["kind"] == "box"
            labels["colour"].append(1 + COLOUR_NAMES.index(obj["colour"]) if obj else 0)
            labels["kind"].append(PATCH_KINDS.index(obj["kind"]) if obj else 0)
            labels["size"].append(IGNORE if is_box else 1 + SIZES.index(obj["size"]) if obj else 0)
            labels["letter"].append(1 + LETTERS.index(objects[glyphs[0]]["letter"]) if glyphs else IGNORE)
            labels["centre"].append(int((row, column) in centres))
            labels["count"].append(min(5, sum(o["colour"] == obj["colour"] for o in objects)) if obj and not is_box else IGNORE)
            labels["arrow"].append(int(arrow_pixels >= 4))
            labels["arrow_head"].append(int(counts.get(ARROW_HEAD_ID, 0) >= 4))
            labels["arrow_target"].append(int(obj["role"] == "target") if is_box else IGNORE)
            labels["arrow_source"].append(int(obj["role"] == "source") if is_box else IGNORE)
            labels["title"].append(TITLES.index(title) if counts.get(TITLE_TEXT_ID, 0) >= 4 else IGNORE)
            labels["title_text"].append(int(counts.get(TITLE_TEXT_ID, 0) >= 4))
            labels["row"].append(row)
            labels["column"].append(column)
    return labels, owners
