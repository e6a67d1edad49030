-- Kind-specific provider settings as a JSON object of strings
-- (e.g. {"api_version":"2024-10-21"} for azure). Never holds a secret.
ALTER TABLE providers ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
