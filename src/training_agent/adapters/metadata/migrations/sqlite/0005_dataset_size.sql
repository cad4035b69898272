-- datasets.size_bytes: the dataset zip's size
ALTER TABLE datasets ADD COLUMN size_bytes INTEGER;
