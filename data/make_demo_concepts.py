"""Writes the offline demo's concepts: data/demo/<concept>/{train,test,test_novel,open_ended}.jsonl.

Six simple concepts that small models represent: each is a prompt completed by one word that matches the concept
(positive) or its opposite (negative). Training and test items use disjoint prompt templates, so evaluation prompts
were never seen when the steering vectors or T were fitted. ``test.jsonl`` reuses the training word pairs in the new
templates (the "in-vocabulary" set); ``test_novel.jsonl`` puts the same test templates with word pairs written for
this project that no training pair of any demo concept uses, and that share no stem with a training word (neither
contains the other), so a transfer cannot ride on the training words alone. Each concept also has open-ended prompts
(``open_ended.jsonl``, one ``{"prompt"}`` a line): short, neutral requests for free text in which the concept can
show up, for steered generation judged by e.g. a sentiment analyser. They are written for this project, are disjoint
from the train/test templates (none contains one) and use neither pole's words. Rerun after editing:
`python data/make_demo_concepts.py`.
"""

from __future__ import annotations

import json
import re
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
        # Held out by word: no training pair (of any concept) uses these words; test_novel.jsonl pairs them with
        # the test templates.
        "novel_words": [
            (" superb", " appalling"),
            (" brilliant", " lousy"),
            (" delightful", " disappointing"),
            (" marvellous", " atrocious"),
            (" perfect", " disastrous"),
            (" good", " poor"),
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
        "open_ended": [
            "Write a short review of the restaurant you visited last weekend.",
            "Describe your morning commute.",
            "Tell me about your day.",
            "Write a few lines about the last film you saw.",
            "Describe your neighbourhood to someone who has never been there.",
            "Tell me about the last meal you cooked.",
            "Write a short review of the hotel where you stayed.",
            "Describe your first week at university.",
            "Tell me about a teacher you remember.",
            "Write a postcard to a friend about your holiday.",
            "Describe the last concert you went to.",
            "Tell me about the book you are reading.",
            "Write a short review of the phone you use every day.",
            "Describe your last visit to the dentist.",
            "Tell me how your job interview went.",
            "Write a message to your landlord about the flat.",
            "Describe the wedding you attended last month.",
            "Tell me about your weekend.",
            "Write a short review of the cafe on the corner.",
            "Describe the customer service you got when you called the bank.",
            "Tell me about the last time you went shopping.",
            "Describe your flight home.",
            "Write a short diary entry about today.",
            "Tell me about the neighbours in your building.",
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
        "novel_words": [
            (" searing", " glacial"),
            (" steaming", " cool"),
            (" blazing", " arctic"),
            (" toasty", " nippy"),
            (" tropical", " wintry"),
            (" sizzling", " frigid"),
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
        "open_ended": [
            "Describe the weather in the town today.",
            "Tell me about the kitchen while dinner was cooking.",
            "Describe what it was like to walk home last night.",
            "Describe the water when you went for a swim in the sea.",
            "Tell me about the climate where you grew up.",
            "Describe the inside of the greenhouse.",
            "Describe how the bathroom felt after your shower.",
            "Tell me about the day you spent at the beach.",
            "Describe the air at the top of the mountain.",
            "Describe the cup of tea you just made.",
            "Tell me about the night you camped in the desert.",
            "Describe the bakery first thing in the morning.",
            "Describe the office this afternoon.",
            "Tell me about the soup you had for lunch.",
            "Describe the pool at the sports centre.",
            "Describe the wind on the walk to school.",
            "Tell me what the weather was like on your holiday.",
            "Describe the room where you sleep.",
            "Describe the bath you ran for your child.",
            "Tell me about the forecast for tomorrow.",
            "Describe the air in the train carriage.",
            "Describe the drink you ordered at the bar.",
            "Describe the stream behind the cottage.",
            "Describe the floor under your bare feet.",
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
        "novel_words": [
            (" gigantic", " petite"),
            (" immense", " compact"),
            (" colossal", " microscopic"),
            (" large", " puny"),
            (" towering", " diminutive"),
            (" mammoth", " teeny"),
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
        "open_ended": [
            "Describe the house at the end of the street.",
            "Tell me about the dog you saw in the park.",
            "Describe the room you are sitting in.",
            "Describe the fish you caught on your trip.",
            "Tell me about the island you visited.",
            "Describe the hotel room you were given.",
            "Describe the crowd at the festival.",
            "Tell me about the car your neighbour drives.",
            "Describe the meal the waiter brought you.",
            "Describe the garden behind the cottage.",
            "Tell me about the boat moored in the harbour.",
            "Describe the library in your town.",
            "Describe the insect on the windowsill.",
            "Tell me about the parcel the courier delivered.",
            "Describe the park near your home.",
            "Describe the horse in the field.",
            "Tell me about the city you moved to.",
            "Describe the kitchen in your flat.",
            "Describe the sandwich you had for lunch.",
            "Tell me about the rock you found on the beach.",
            "Describe the stadium where the match was held.",
            "Describe the wave that hit the pier.",
            "Tell me about the suitcase you packed.",
            "Describe the tent you slept in.",
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
        "novel_words": [
            (" brisk", " lethargic"),
            (" breakneck", " languid"),
            (" nimble", " tardy"),
            (" zippy", " dawdling"),
            (" instant", " delayed"),
            (" racing", " crawling"),
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
        "open_ended": [
            "Tell me about the train ride.",
            "Describe your journey to work this morning.",
            "Describe the horse race you watched.",
            "Tell me about your laptop.",
            "Describe how the river flowed after the rain.",
            "Tell me about the service at the post office.",
            "Describe the animal you saw crossing the road.",
            "Describe the way your friend drives.",
            "Tell me about the queue at the supermarket.",
            "Describe the cyclists in the race.",
            "Tell me about the wifi at the hotel.",
            "Describe the marathon you ran.",
            "Describe the ferry crossing.",
            "Tell me how the repairs on your house are going.",
            "Describe the taxi ride to the airport.",
            "Describe the way the clouds moved across the sky.",
            "Tell me about the checkout at the online shop.",
            "Describe the lift at the train station.",
            "Tell me about the way your colleague answers emails.",
            "Describe the tide coming in.",
            "Describe the escalator at the shopping centre.",
            "Tell me about the pace of life in your village.",
            "Describe the traffic on the motorway.",
            "Tell me about how your computer starts up.",
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
        "novel_words": [
            (" rugby", " salads"),
            (" hockey", " curry"),
            (" cricket", " sushi"),
            (" baseball", " cheese"),
            (" golf", " noodles"),
            (" volleyball", " sandwiches"),
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
        "open_ended": [
            "Tell me how you like to spend your Saturday afternoons.",
            "Describe a hobby you would like to take up.",
            "Write a short blog post about your weekend.",
            "Tell me what you did after work yesterday.",
            "Describe a skill you learned from your parents.",
            "Tell me about a class you would like to join.",
            "Describe what you and your friends did last Sunday.",
            "Write a few lines about something you care about.",
            "Tell me about a competition you once entered.",
            "Describe a show you have been watching lately.",
            "Tell me about a video you watched online recently.",
            "Describe your ideal day off.",
            "Write a short speech for your club's anniversary.",
            "Tell me what you would teach a group of children.",
            "Describe an afternoon you spent with your family.",
            "Tell me about a famous person you admire.",
            "Describe a tradition in your town.",
            "Write a short email inviting friends to join your hobby.",
            "Tell me about the last thing you practised.",
            "Describe what you would write a book about.",
            "Tell me about the app you use most on your phone.",
            "Describe a memorable evening with your neighbours.",
            "Tell me about a prize you once won.",
            "Describe what you look forward to at the weekend.",
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
        "novel_words": [
            (" antique", " modern"),
            (" veteran", " novice"),
            (" mature", " juvenile"),
            (" vintage", " recent"),
            (" historic", " contemporary"),
            (" wrinkled", " teenage"),
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
        "open_ended": [
            "Describe the person who lives next door.",
            "Tell me about the car parked outside.",
            "Describe the building where you work.",
            "Describe the man who served you at the shop.",
            "Tell me about the tree in your garden.",
            "Describe the furniture in your living room.",
            "Describe the woman you sat beside on the train.",
            "Tell me about the dog that belongs to your friend.",
            "Describe the town hall.",
            "Describe the bicycle you ride to work.",
            "Tell me about the teacher who taught you to read.",
            "Describe the boots you wear for hiking.",
            "Describe the pub on the high street.",
            "Tell me about the doctor at your local clinic.",
            "Describe the violin your cousin plays.",
            "Describe the boat tied up at the jetty.",
            "Tell me about the musician you heard busking.",
            "Describe the map hanging on the classroom wall.",
            "Describe the horse your aunt keeps.",
            "Tell me about the laptop on your desk.",
            "Describe the statue in the park.",
            "Describe the coat hanging in the hallway.",
            "Tell me about the stranger who asked you for directions.",
            "Describe the ship in the dock.",
        ],
    },
}


def check_open_ended(name: str, spec: dict[str, list]) -> None:
    """Raises if an open-ended prompt repeats or contains a train/test template, or names a pole's word."""
    templates = [t.casefold() for t in spec["train"] + spec["test"]]
    words = {w.strip().casefold() for pair in spec["words"] for w in pair}
    for prompt in spec["open_ended"]:
        text = prompt.casefold()
        if any(t in text for t in templates):
            raise ValueError(f"{name}: open-ended prompt {prompt!r} contains a train/test template")
        if words & set(re.findall(r"[a-z]+", text)):
            raise ValueError(f"{name}: open-ended prompt {prompt!r} uses a pole's word, so it is not neutral")
    if len(set(spec["open_ended"])) != len(spec["open_ended"]):
        raise ValueError(f"{name}: open-ended prompts repeat")


def check_novel_words() -> None:
    """Raises if a novel word is a training word of any demo concept, contains one or is contained in one, or
    repeats."""
    trained = {w.strip().casefold() for spec in CONCEPTS.values() for pair in spec["words"] for w in pair}
    novel = [w.strip().casefold() for spec in CONCEPTS.values() for pair in spec["novel_words"] for w in pair]
    if len(set(novel)) != len(novel):
        raise ValueError("a novel word repeats")
    for word in novel:
        clash = [t for t in trained if t in word or word in t]
        if clash:
            raise ValueError(f"novel word {word!r} overlaps the training words {clash}")


def main(root: Path = Path(__file__).parent / "demo") -> None:
    check_novel_words()
    for name, spec in CONCEPTS.items():
        check_open_ended(name, spec)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, templates, words in (
            ("train", spec["train"], spec["words"]),
            ("test", spec["test"], spec["words"]),
            ("test_novel", spec["test"], spec["novel_words"]),
        ):
            rows = [{"prompt": prompt, "positive": pos, "negative": neg} for prompt in templates for pos, neg in words]
            text = "".join(json.dumps(row) + "\n" for row in rows)
            (folder / f"{split}.jsonl").write_text(text)
        text = "".join(json.dumps({"prompt": prompt}) + "\n" for prompt in spec["open_ended"])
        (folder / "open_ended.jsonl").write_text(text)


if __name__ == "__main__":
    main()
