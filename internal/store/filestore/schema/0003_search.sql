-- Text search (issue 7): what Filter.Text searches in each ended session, from store.SearchText,
-- at most store.MaxSearchText bytes per session. Trigrams let `text LIKE '%word%'` use the
-- index instead of reading every recording.
CREATE VIRTUAL TABLE session_text USING fts5(session_id UNINDEXED, text, tokenize = 'trigram');
