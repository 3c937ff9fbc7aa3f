"""A small text about Rome, written for the tests (no corpus files are needed to run them)."""

import random

SENTENCES = [
    "Who is Caesar? Caesar was a Roman general who crossed the Rubicon with his legions.",
    "The senate and the people of Rome met in the forum to hear the consuls speak.",
    "Augustus became the first emperor, and the republic gave way to the empire.",
    "The legions built roads, camps and bridges across Gaul, Spain and Britain.",
    "Cicero spoke against Catiline in the senate, and the conspiracy failed.",
    "Hannibal led his army and his elephants over the Alps into Italy.",
    "The tribunes of the plebs defended the people against the power of the nobles.",
    "Rome was not built in a day; its walls grew slowly around the seven hills.",
    "The gods of Rome were honoured with temples, games and sacrifices.",
    "Pompey and Crassus shared power with Caesar until the civil war began.",
]


def sample_text(paragraphs: int = 120, seed: int = 0) -> str:
    """Return `paragraphs` paragraphs of shuffled sentences, hard-wrapped like a Gutenberg file."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = rng.sample(SENTENCES, k=rng.randint(3, 6))
        words = " ".join(sentences).split(" ")
        lines, line = [], ""
        for word in words:
            if len(line) + len(word) > 68:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
