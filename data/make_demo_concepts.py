"""Writes the offline demo's concepts: data/demo/<concept>/{train,test}.jsonl.

Six simple concepts that small models represent: each is a prompt completed by one word that matches the concept
(positive) or its opposite (negative). Training and test items use disjoint prompt templates, so evaluation prompts
were never seen when the steering vectors or T were fitted. Rerun after editing: `python data/make_demo_concepts.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

CONCEPTS: dict[str, dict[str, list]] = {
    "sentiment": {
        "words": [
            (" wonderful", " terrible"),
            (" amazing", " awful"),
            (" great", " bad"),
            (" fantastic", " horrible"),
            (" excellent", " dreadful"),
            (" lovely", " miserable"),
        ],
        "train": [
            "I watched the movie last night, and honestly it was",
            "The food at that restaurant was",
            "My holiday in Spain was",
            "Her new song is",
            "The concert yesterday was",
            "Overall, the hotel was",
            "The book I just finished was",
            "Working with him was",
            "Our trip to the museum was",
            "My first day at the new job was",
            "The party on Saturday was",
            "That video game is",
            "The coffee in this cafe is",
            "The teacher's lesson today was",
            "The new phone I bought is",
            "The view from our room was",
        ],
        "test": [
            "The play at the theatre was",
            "My birthday this year was",
            "The service on the flight was",
            "Their latest album is",
            "The weekend at the lake was",
            "The pizza we ordered was",
        ],
    },
    "temperature": {
        "words": [
            (" hot", " cold"),
            (" warm", " chilly"),
            (" boiling", " freezing"),
            (" scorching", " icy"),
            (" heated", " frozen"),
            (" sweltering", " frosty"),
        ],
        "train": [
            "The soup they served was very",
            "In July the desert gets",
            "When I touched the stove it felt",
            "The water in the lake was",
            "The tea in my cup is",
            "The sand on the beach was",
            "The wind this morning was",
            "The air inside the car was",
            "The bath water felt",
            "The metal railing was",
            "Yesterday the weather was",
            "The room after the party was",
            "The milk from the fridge was",
            "The pavement at noon was",
            "My coffee is still",
            "The night in the tent was",
        ],
        "test": [
            "The oven door was",
            "The shower this morning was",
            "Her forehead felt",
            "The classroom in winter is",
            "The drink he handed me was",
            "The stones in the sun were",
        ],
    },
    "size": {
        "words": [
            (" huge", " tiny"),
            (" big", " small"),
            (" enormous", " little"),
            (" giant", " miniature"),
            (" massive", " minuscule"),
            (" vast", " cramped"),
        ],
        "train": [
            "The elephant at the zoo was",
            "They live in a house that is",
            "The city where I grew up is",
            "The box that arrived today was",
            "The fish he caught was",
            "Their garden is",
            "The crowd at the stadium was",
            "The portion on my plate was",
            "The ship in the harbour was",
            "The spider in the bathroom was",
            "The tree behind the school is",
            "His new office is",
            "The mountain we climbed was",
            "The hole in the road was",
            "The dog next door is",
            "The cake for the wedding was",
        ],
        "test": [
            "The bedroom in the flat is",
            "The statue in the square is",
            "The parcel on the doorstep was",
            "The lake near the village is",
            "The truck outside was",
            "The apple she picked was",
        ],
    },
    "speed": {
        "words": [
            (" fast", " slow"),
            (" quick", " sluggish"),
            (" rapid", " gradual"),
            (" speedy", " leisurely"),
            (" swift", " plodding"),
            (" hasty", " unhurried"),
        ],
        "train": [
            "The train to London was",
            "My old computer is really",
            "The runner in the final was",
            "The internet connection here is",
            "The new car is very",
            "The river after the storm was",
            "The waiter at lunch was",
            "The delivery of my order was",
            "The horse in the race was",
            "Her typing is",
            "The lift in our building is",
            "The pace of the walk was",
            "The bus this morning was",
            "The queue at the bank moved",
            "His reaction was",
            "The recovery after surgery was",
        ],
        "test": [
            "The cyclist on the hill was",
            "The download of the file was",
            "The boat across the bay was",
            "The progress on the project was",
            "The dog chasing the ball was",
            "The music in the club was",
        ],
    },
    "topic": {
        "words": [
            (" football", " cooking"),
            (" tennis", " baking"),
            (" basketball", " pasta"),
            (" soccer", " desserts"),
            (" cycling", " bread"),
            (" swimming", " soup"),
        ],
        "train": [
            "On weekends I love to spend my time on",
            "My favourite thing to watch on TV is",
            "Her biggest passion in life is",
            "The magazine on the table was all about",
            "He wrote a long blog post about",
            "At school my best subject was always",
            "The podcast I listen to is about",
            "My brother never stops talking about",
            "The new course at the college teaches",
            "Last summer I took lessons in",
            "The documentary last night was about",
            "Our club meets every Friday for",
            "The book on my shelf is a guide to",
            "She opened a small business focused on",
            "The festival this year celebrates",
            "My grandfather taught me everything about",
        ],
        "test": [
            "The website I read every morning covers",
            "His new hobby is",
            "The channel she runs is about",
            "The best part of my holiday was the",
            "Tonight's class is about",
            "The exhibition in town is on",
        ],
    },
    "age": {
        "words": [
            (" old", " young"),
            (" elderly", " youthful"),
            (" ancient", " new"),
            (" aged", " fresh"),
            (" older", " younger"),
            (" senior", " junior"),
        ],
        "train": [
            "The man sitting next to me on the bus was very",
            "The castle on the hill is",
            "My neighbour's dog is quite",
            "The teacher in our class was",
            "The tree in the park is",
            "The woman at the counter looked",
            "Their car is rather",
            "The wine they served was",
            "The shoes in the window were",
            "The building across the street is",
            "His grandmother is",
            "The bridge over the river is",
            "The horse on the farm is",
            "The painting in the hall is",
            "The doctor who treated me was",
            "The computer in the office is",
        ],
        "test": [
            "The church in the village is",
            "The actor in the film was",
            "The cat in the garden is",
            "The house they bought is",
            "The singer on stage was",
            "The bicycle in the shed is",
        ],
    },
}


def main(root: Path = Path(__file__).parent / "demo") -> None:
    for name, spec in CONCEPTS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            rows = [
                {"prompt": prompt, "positive": pos, "negative": neg}
                for prompt in spec[split]
                for pos, neg in spec["words"]
            ]
            text = "".join(json.dumps(row) + "\n" for row in rows)
            (folder / f"{split}.jsonl").write_text(text)


if __name__ == "__main__":
    main()
