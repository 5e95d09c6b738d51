"""The bytes of uploads and attachments: one store interface (local directory or any
S3-compatible service) and the image work (sniffing, EXIF stripping, thumbnails).

Everything that blocks (disk renames of large files, boto3, Pillow) runs on a thread pool of
its own, never on the reactor; the metadata lives in chatd.store, so that any node serves
any attachment."""

from chatd.media.stores import FileStore, Located, MediaStore, S3Store, open_media_store

__all__ = ["FileStore", "Located", "MediaStore", "S3Store", "open_media_store"]
