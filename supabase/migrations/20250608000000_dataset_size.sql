-- datasets.size_bytes: the dataset zip's size
ALTER TABLE public.datasets ADD COLUMN IF NOT EXISTS size_bytes bigint;

NOTIFY pgrst, 'reload schema';
