// The prompt set `flint verify` uses when no --prompts file is given: the kinds of requests FLAN-T5 users send
// (translation, summarisation, question answering, classification, arithmetic), unicode, and one input near the
// 512-token length T5 was trained with.

public enum DefaultPrompts {
    public static let prompts: [String] = [
        "translate English to German: The house is wonderful.",
        "translate English to French: The weather is nice today and we are going for a walk.",
        "translate English to Romanian: Please send me the report before Friday.",
        "summarize: The city council met on Tuesday to discuss the new budget. After a long debate, the members "
            + "agreed to increase funding for public transport and to reduce spending on road repairs next year.",
        "summarize: Scientists have found that regular exercise improves memory in older adults. The study "
            + "followed two thousand people for ten years and measured their health every six months.",
        "Answer the following question. What is the capital of France?",
        "Q: Who wrote the play Romeo and Juliet? A:",
        "Read the text and answer: Tom has three apples and gives one to Anna. How many apples does Tom have now?",
        "Is the following review positive or negative? The film was far too long and the actors seemed bored.",
        "Classify the topic of this sentence as sports, politics or science: The team won the final in extra time.",
        "sst2 sentence: a gorgeous, witty, seductive movie.",
        "cola sentence: The course is jumping well.",
        "What is 12 plus 30?",
        "Calculate: 7 times 8 equals",
        "If a train travels 60 km in one hour, how far does it travel in three hours?",
        "Répondez en français : quelle est la couleur du ciel ?",
        "Übersetze ins Englische: Das Wetter ist heute schön.",
        "日本の首都はどこですか？ Answer in English.",
        "Привет! Как дела? Translate to English.",
        "Fill in the blank: The quick brown <extra_id_0> jumps over the lazy dog.",
        "reverse: red apple blue",
        "reverse: one two three four five",
        longInput,
    ]

    /// About 480 tokens with the T5 vocabulary: a long summarisation request.
    public static let longInput: String = {
        let paragraph = "The history of the printing press begins in the fifteenth century, when metal movable type "
            + "made it possible to produce books far faster than scribes could copy them by hand. Within a few decades "
            + "printing shops had opened in most large European cities, and the price of books fell sharply. "
            + "Pamphlets, newspapers and scientific journals followed, spreading ideas across borders and changing "
            + "how people learned, argued and governed themselves. "
        return "summarize: " + String(repeating: paragraph, count: 5)
    }()
}
